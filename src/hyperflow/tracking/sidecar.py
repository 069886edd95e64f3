"""A one-at-a-time search's MLflow calls sent in order by a child process, on a core the search does not use.

:class:`~hyperflow.tracking.background_calls.BackgroundCalls` sends them from a thread: that overlaps their waits
with training but not their CPU, since MLflow's store code (SQLAlchemy) holds the interpreter lock that the
one-thread training loop waits for. :class:`SidecarCalls` keeps the same contract (calls in the order submitted,
the first failure stops every call behind it and is raised by the next ``submit`` or by ``drain``) with the calls
run by one child process, forked from the command's fork server (:mod:`hyperflow.runtime.processes`). Measured
(docs/benchmarks.md, "Tracking mechanisms"): on an idle 2-core machine it saves ~14 % of a tracked one-at-a-time
search; on a busy one its fork server's imports cost more than it saves, so the search uses it only when a CPU is
spare (:func:`hyperflow.machine.spare_cpu`).

A run whose creating call is still queued travels as that call's number, resolved in the child, which ran that
call before (:meth:`~hyperflow.tracking.background_calls.PendingRun.__reduce__`). The child ignores Ctrl-C and
SIGTERM (the search sends what they interrupt, then closes it) and exits once the search's process is gone.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from hyperflow.errors import StoreFailure
from hyperflow.runtime import signals
from hyperflow.runtime.processes import context, main_module_hidden, process_identity, watch_parent
from hyperflow.tracking import background_calls, worker_environment
from hyperflow.tracking.faults import portable

SOURCE = "the process that sends the search's MLflow calls"
_failure: BaseException | None = None  # in the child: the first call that failed


def _start(env: dict[str, str], search: tuple[int, str | None], path: list[str], cwd: str) -> None:
    """The child's start: the search's store settings, import path and folder; its signals; the watch on the search."""
    sys.path[:] = path
    os.chdir(cwd)
    worker_environment.use_environment(env)
    signals.ignore_interrupts()
    watch_parent(search, lambda: signals.leave(0))


def _call(number: int, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """In the child: call ``number``, unless an earlier one failed; a run it creates is kept under its number."""
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
        background_calls.CREATED_BY_CALL[number] = result
    return result


def _death() -> StoreFailure:
    """A child that died (the out-of-memory killer, ``kill -9``) took the calls it had not sent with it: the search
    stops as on any store failure (its runs end KILLED; a resume runs the lost trials again)."""
    return StoreFailure("it died (killed, e.g. by the out-of-memory killer) with the calls it had not sent yet", SOURCE)


class SidecarCalls(background_calls.BackgroundCalls):
    """:class:`~hyperflow.tracking.background_calls.BackgroundCalls`' contract, the calls run by a child process:
    ``submit`` takes picklable calls (module functions, a client's methods) and returns their Future."""

    def __init__(self, env: dict[str, str]) -> None:
        self.futures: list[Future] = []
        start = (env, process_identity(os.getpid()), list(sys.path), os.getcwd())
        self.pool = ProcessPoolExecutor(1, mp_context=context(), initializer=_start, initargs=start)
        self.numbers = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        self._raise_failures(wait=False)
        number = next(self.numbers)
        try:
            with main_module_hidden():  # the first call starts the child
                inner = self.pool.submit(_call, number, fn, args, kwargs)
        except BrokenProcessPool:
            raise _death() from None
        future = _relayed(inner)
        future.call_number = number  # type: ignore[attr-defined]
        self.futures.append(future)
        return future

    def open_store(self, experiment_id: str) -> None:
        """Start the child now, opening its connection to the store (its first call pays for it)."""
        self.submit(worker_environment.open_store, experiment_id)


def _relayed(inner: Future) -> Future:
    """``inner``'s outcome, the child's death as that StoreFailure (whoever waits on a call, e.g. for a run's id,
    meets the same failure as the next ``submit``)."""
    outer: Future = Future()

    def relay(done: Future) -> None:
        exc = done.exception()
        if exc is None:
            outer.set_result(done.result())
        else:
            outer.set_exception(_death() if isinstance(exc, BrokenProcessPool) else exc)

    inner.add_done_callback(relay)
    return outer
