"""The OS process a command runs in: its start-up (the garbage collector's phases, the libraries' log records),
the fork server and the processes it forks, signals and the process's exit. Imports neither MLflow, hyperopt
nor torch; the ML lives in ``hyperflow.core``, the MLflow calls in ``hyperflow.tracking``."""
