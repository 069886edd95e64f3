"""Imported by the fork server only, the last of its preload modules (``hyperflow.runtime.processes.PRELOAD``).

The fork server holds no data (every child it forks is a process of its own), but it inherits the
command's stdout and stderr, so whoever reads the command's output to its end (a pipe, a scheduler's or
CI's log, ``mlflow run`` under ``subprocess``) also waits for the fork server to exit; a normal interpreter
exit tears down the torch and MLflow imports first, 1–2 s. Here it exits at once: its only ``atexit``
handler calls ``os._exit`` (its children never run ``atexit``; multiprocessing ends them with ``os._exit``).
The preloaded heap is frozen too, so that the garbage collector of every child skips it. Ctrl-C gets
Python's own handler back (:mod:`hyperflow.runtime.fork_server_start` made it end the imports silently). The
children log as the command does (:mod:`hyperflow.runtime.library_logs`: a library's record in one line).
"""

import gc

from hyperflow.runtime import library_logs, signals

library_logs.install(worker=True)
gc.freeze()
signals.fork_server_ready()
