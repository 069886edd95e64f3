"""Child processes of a command: one fork server, processes that never re-run the caller's script, and a
watch that ends a child once the process that started it is gone.

The children (trial workers) are forked from a ``forkserver`` that imports torch,
MLflow and hyperflow once, in the background, while the command imports its own; each child is a fork of a
clean process that never trained, opened a store or started a thread (forking the command itself would copy
its open database connections and its torch thread pool). Imports nothing heavy.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# what a trial imports (names only: nothing is imported here), once in the process its workers are forked from: here
# the fork server, under Spark hyperflow.workflows.search_spark_daemon. hyperflow.tracking's model (through
# model_logging) and callbacks, which the package imports on first use only; MLflow's database store (SQLAlchemy,
# alembic), which a child's first call on sqlite would import; torch's compiler, which a torch optimizer imports when
# the first one is made (measured, a 4-trial search on 2 workers, 2 rounds each: fork server and workers 10.0-10.8
# CPU-s without it, 8.7-8.9 with it); scikit-learn's datasets, column transformer, imputer and splitter, which the
# built-in trainer's data loading imports on first use (measured, in each new worker: 0.14-0.18 CPU-s without them
# here, 0.00 with; once here instead, off the command's critical path; a Spark trial is a new worker each time)
TRIAL_IMPORTS = [
    "hyperflow.workflows.search_trial",
    "hyperflow.core.assembly",
    "hyperflow.tracking",
    "hyperflow.tracking.model_logging",
    "hyperflow.tracking.callbacks",
    "mlflow.store.tracking.sqlalchemy_store",
    "torch._dynamo",
    "sklearn.datasets",
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.model_selection",
]
# the fork server's: first hyperflow.runtime.fork_server_start (Ctrl-C while importing: no traceback), last
# hyperflow.runtime.fork_server, which makes the fork server's own exit instant
PRELOAD = ["hyperflow.runtime.fork_server_start", *TRIAL_IMPORTS, "hyperflow.runtime.fork_server"]


def available() -> bool:
    """Whether this platform has a fork server (Linux, macOS; not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start processes that do not import the caller's ``__main__`` script. multiprocessing re-runs it in
    every new process so that functions defined there can be called; the children only run hyperflow's code,
    and a script without an ``if __name__ == "__main__":`` guard would start the search again in each."""
    main = sys.modules.get("__main__")
    path, spec = getattr(main, "__file__", None), getattr(main, "__spec__", None)
    if main is None or (path is None and spec is None):
        yield
        return
    try:
        main.__spec__ = None
        if path is not None:
            del main.__file__
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def prestart() -> None:
    """Start the fork server now (it imports torch and MLflow in the background); idempotent and cheap."""
    from multiprocessing import forkserver

    context()
    with main_module_hidden():
        forkserver.ensure_running()


def process_identity(pid: int) -> tuple[int, str | None]:
    """``pid`` and its start time (Linux: ``/proc``), so a pid used again by another process is not taken for it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return pid, fh.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return pid, None


def alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not); with ``started`` (its start time, from
    :func:`process_identity`), also that the pid is not used again by another process (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0] not in ("Z", "X") and started in (None, fields[19])
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True


def watch_parent(parent: tuple[int, str | None], on_gone: Callable[[], None]) -> None:
    """Call ``on_gone`` (on a daemon thread) once ``parent`` has exited, e.g. killed with -9: the fork server
    cannot tell, since every child holds its liveness pipe open."""

    def watch() -> None:
        tick = threading.Event()
        while not tick.wait(0.5):
            if not alive(*parent):
                on_gone()
                return

    threading.Thread(target=watch, daemon=True, name="hyperflow-orphan-watch").start()
