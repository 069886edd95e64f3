"""MLflow calls sent in order by a separate process, for trials that train in the search's own process.

:class:`~hyperflow.tracking.runs.BackgroundCalls` sends them from a thread, which overlaps their waits with
training but not their CPU: MLflow's store code (SQLAlchemy on sqlite, ~27 ms of Python a trial) holds the
GIL, and the one-thread training loop waits for it (bench/search_overhead.py). The sidecar is the same
contract in child processes, so that work runs on another core: :meth:`SidecarCalls.submit` returns a
Future, calls go out in the order submitted (per run, with more than one lane), the first failure stops every call behind it and is raised by
the next ``submit`` or by ``drain``. A run whose creating call is still queued travels as the number of that
call (:func:`~hyperflow.tracking.runs.created_by_call`), resolved in the sidecar, which ran it before. The sidecar ignores Ctrl-C and
SIGTERM (the search sends what they interrupt, then closes it) and exits once the search process is gone.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

from hyperflow.core.processes import context, main_module_hidden, process_identity, watch_parent
from hyperflow.tracking.runs import CREATED_BY_CALL, PendingRun, raise_failures

_failure: BaseException | None = None  # in the sidecar: the first call that failed


def _start(env: dict[str, str], search: tuple[int, str | None], path: list[str], cwd: str) -> None:
    from hyperflow.tracking import search_store

    sys.path[:] = path
    os.chdir(cwd)
    search_store.use_environment(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch_parent(search, lambda: os._exit(0))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can travel back: a store failure as one line (its cause does not survive pickling)."""
    from hyperflow.tracking.faults import StoreFailure, is_store_error, one_line, store_error_text

    if is_store_error(exc):
        return StoreFailure(store_error_text(exc))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {one_line(exc)}")


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
        _failure = _portable(exc)
        raise _failure from None
    if isinstance(result, Run):
        CREATED_BY_CALL[number] = result
    return result


class SidecarCalls:
    """:class:`~hyperflow.tracking.runs.BackgroundCalls`' contract, with the calls run by child processes.

    ``lanes`` processes side by side (for a slow store: one trial's results and end need not hold up the
    next trial's run): a call that names a run goes to the lane that created it, so a run's calls keep their
    order; any other call (a new run, the search run's progress) goes to the next lane in turn."""

    def __init__(self, env: dict[str, str], lanes: int = 1) -> None:
        start = (env, process_identity(os.getpid()), list(sys.path), os.getcwd())
        self.lanes = [ProcessPoolExecutor(1, mp_context=context(), initializer=_start, initargs=start)
                      for _ in range(max(1, lanes))]
        self.futures: list[Future] = []
        self.numbers = itertools.count()
        self.turns = itertools.count()  # the lanes of calls that name no run, in turn

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` (all picklable); returns its Future."""
        self._raise_failures(wait=False)
        number = next(self.numbers)
        lane = next((a.created.lane for a in (*args, *kwargs.values())
                     if isinstance(a, PendingRun) and hasattr(a.created, "lane")), None)
        if lane is None:
            lane = next(self.turns) % len(self.lanes)
        with main_module_hidden():  # the first submit to a lane starts its process
            future = self.lanes[lane].submit(_call, number, fn, args, kwargs)
        future.call_number, future.lane = number, lane  # type: ignore[attr-defined]
        self.futures.append(future)
        return future

    def drain(self) -> None:
        self._raise_failures(wait=True)

    def _raise_failures(self, wait: bool) -> None:
        self.futures = raise_failures(self.futures, wait)

    def close(self) -> None:
        try:
            self.drain()
        finally:
            for lane in self.lanes:
                lane.shutdown(wait=True, cancel_futures=True)
