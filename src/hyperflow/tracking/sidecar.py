"""MLflow calls sent in order by a separate process, for trials that train in the search's own process.

:class:`~hyperflow.tracking.runs.BackgroundCalls` sends them from a thread, which overlaps their waits with
training but not their CPU: MLflow's store code (SQLAlchemy on sqlite, ~27 ms of Python a trial) holds the
GIL, and the one-thread training loop waits for it (bench/search_overhead.py). The sidecar is the same
contract in child processes, so that work runs on another core: :meth:`SidecarCalls.submit` returns a
Future, calls go out in the order submitted (per run, with more than one lane), the first failure stops every call
behind it and is raised by
the next ``submit`` or by ``drain``. A run whose creating call is still queued travels as the number of that
call (:func:`~hyperflow.tracking.runs.created_by_call`), resolved in the sidecar, which ran it before. The sidecar
ignores Ctrl-C and
SIGTERM (the search sends what they interrupt, then closes it) and exits once the search process is gone.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from hyperflow.errors import StoreFailure
from hyperflow.runtime import signals
from hyperflow.runtime.processes import context, main_module_hidden, process_identity, watch_parent
from hyperflow.tracking.faults import portable
from hyperflow.tracking.runs import CREATED_BY_CALL, PendingRun, QueuedCalls

_failure: BaseException | None = None  # in the sidecar: the first call that failed


def _start(env: dict[str, str], search: tuple[int, str | None], path: list[str], cwd: str) -> None:
    from hyperflow.tracking import search_store

    sys.path[:] = path
    os.chdir(cwd)
    search_store.use_environment(env)
    signals.ignore_interrupts()
    watch_parent(search, lambda: signals.leave(0))


def _call(number: int, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    global _failure
    from mlflow.entities import Run

    from hyperflow.tracking import search_store

    if _failure is not None:
        raise _failure
    try:
        with search_store.quiet_logs():  # the search reports a failure once, in one line
            result = fn(*args, **kwargs)
    except BaseException as exc:
        _failure = portable(exc)
        raise _failure from None
    if isinstance(result, Run):
        CREATED_BY_CALL[number] = result
    return result


def _death() -> StoreFailure:
    """A sidecar that died (the out-of-memory killer, ``kill -9``) took the calls it had not sent with it: the
    search stops as on any store failure (its runs end KILLED; a resume runs the lost trials again)."""
    return StoreFailure(
        "it died (killed, e.g. by the out-of-memory killer) with the calls it had not sent yet",
        source="the process that sends the search's MLflow calls",
    )


def _relayed(inner: Future) -> Future:
    """``inner``'s outcome, with the lane's death as that StoreFailure (whoever waits on a call, e.g. for a run's
    id, meets the same failure as the next ``submit``)."""
    outer: Future = Future()

    def relay(done: Future) -> None:
        exc = done.exception()
        if exc is None:
            outer.set_result(done.result())
        else:
            outer.set_exception(_death() if isinstance(exc, BrokenProcessPool) else exc)

    inner.add_done_callback(relay)
    return outer


DATABASE_SCHEMES = ("sqlite:", "postgresql", "mysql", "mssql")  # stores MLflow reaches without a server


class SidecarCalls(QueuedCalls):
    """:class:`~hyperflow.tracking.runs.BackgroundCalls`' contract, with the calls run by child processes.

    ``lanes`` processes side by side (for a slow store: one trial's results and end need not hold up the
    next trial's run): a call that names a run goes to the lane that created it, so a run's calls keep their
    order; any other call (a new run, the search run's progress) goes to the next lane in turn. By default
    one lane for a database store, whose calls take milliseconds, and two against a tracking server, whose
    three calls a trial can outlast a trial cut short at its first epochs."""

    def __init__(self, env: dict[str, str], lanes: int | None = None) -> None:
        super().__init__()
        if lanes is None:
            lanes = 1 if env["MLFLOW_TRACKING_URI"].startswith(DATABASE_SCHEMES) else 2
        start = (env, process_identity(os.getpid()), list(sys.path), os.getcwd())
        self.lanes = [
            ProcessPoolExecutor(1, mp_context=context(), initializer=_start, initargs=start)
            for _ in range(max(1, lanes))
        ]
        self.numbers = itertools.count()
        self.turns = itertools.count()  # the lanes of calls that name no run, in turn

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` (all picklable); returns its Future."""
        self._raise_failures(wait=False)
        number = next(self.numbers)
        lane = next(
            (
                a.created.lane
                for a in (*args, *kwargs.values())
                if isinstance(a, PendingRun) and hasattr(a.created, "lane")
            ),
            None,
        )
        if lane is None:
            lane = next(self.turns) % len(self.lanes)
        with main_module_hidden(), self._died():  # the first submit to a lane starts its process
            future = _relayed(self.lanes[lane].submit(_call, number, fn, args, kwargs))
        future.call_number, future.lane = number, lane  # type: ignore[attr-defined]
        self.futures.append(future)
        return future

    @staticmethod
    @contextmanager
    def _died() -> Iterator[None]:
        try:
            yield
        except BrokenProcessPool:
            raise _death() from None

    def open_store(self, experiment_id: str) -> None:
        """Start every lane now, each opening its connection to the store (the first call pays for it)."""
        from hyperflow.tracking.search_store import open_store

        for _ in self.lanes:
            self.submit(open_store, experiment_id)

    def _stop(self) -> None:
        for lane in self.lanes:
            lane.shutdown(wait=True, cancel_futures=True)
