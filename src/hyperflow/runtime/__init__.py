"""The OS process a command runs in, beside ``hyperflow.core`` (the ML), neither knowing the other: ``startup``
(the garbage collector's phases), ``library_logs`` (the libraries' records in one line), ``processes`` and
``fork_server*`` (the fork server and its children), ``workers`` (worker processes in lanes), ``signals`` (the
one owner of signal handlers and of the process's exit) and ``streams`` (output whose reader went away). Imports
neither MLflow, hyperopt nor torch."""
