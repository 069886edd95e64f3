"""Command line: ``hyperflow <command> key=value ...`` (also ``--key value``, ``config=settings.yaml``). Exit codes:
0 done, 1 the job failed (e.g. training diverged), 2 bad input (one line on stderr, nothing half-written),
130 interrupted (Ctrl-C / SIGTERM; runs end KILLED).

``parsing`` (argv → configs), ``checks`` (before any work, cheapest first), ``commands`` (one function per
command: its workflow, its summary, its exit code), ``help``, ``summaries``, ``exits`` (interrupts and store
failures as one line and a code), ``entry`` (``main``: a command run as the process). No logic of a workflow
lives here, and MLflow is reached through tracking.
"""

from hyperflow.cli.entry import main

__all__ = ["main"]
