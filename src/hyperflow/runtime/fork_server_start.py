"""Imported by the fork server only, the first of its preload modules (``hyperflow.runtime.processes.PRELOAD``).

The fork server shares the command's terminal, so a Ctrl-C reaches it too. While it imports torch and MLflow
(the command's first seconds) Python would answer with a ``KeyboardInterrupt`` traceback from deep inside
an import, under the command's own one-line report. It holds nothing yet, so it leaves at once and silently;
:mod:`hyperflow.runtime.fork_server`, the last preload, gives Ctrl-C back to Python's handler before
multiprocessing shields the fork server from it (the children it forks start with that handler).
"""

from hyperflow.runtime import signals

signals.fork_server_importing()
