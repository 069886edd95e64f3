"""When a run's MLflow calls go out: at once (:func:`call_now`), or queued on one background thread
(:class:`BackgroundCalls`) so that they overlap training; a run whose creating call may still be queued
(:class:`PendingRun`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def call_now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The synchronous counterpart of ``BackgroundCalls.submit``: returns what the call returns."""
    return fn(*args, **kwargs)


class PendingRun:
    """A run whose creating call was sent (perhaps still queued): ``id`` waits for that call and raises
    what it raised."""

    def __init__(self, created: Any) -> None:
        self.created = created  # the Run, or a Future of it

    @property
    def id(self) -> str:
        created = self.created.result() if isinstance(self.created, Future) else self.created
        if created is None:
            raise RuntimeError("the call that was to create this run failed")
        return created.info.run_id


def run_id_of(run: str | PendingRun) -> str:
    return run if isinstance(run, str) else run.id


class BackgroundCalls:
    """MLflow calls sent in order by one background thread, so that a trial's calls (creating its run,
    results, end) overlap training instead of adding to it. ``drain`` waits for all of them (and re-raises
    the first failure); ``submit`` re-raises a failure of an earlier call, so an unreachable server stops the
    search within a trial. Once a call has failed, the calls queued behind it are not sent (each raises that
    failure): a trial whose results were refused is never ended FINISHED without them. A kill -9 loses at
    most the calls still queued: those trials stay RUNNING and a resume ends them KILLED and runs them again."""

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyperflow-mlflow")
        self.failure: BaseException | None = None  # the first call that failed (set on the worker thread)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)``; returns its Future (its failure also surfaces here or at drain)."""
        self._raise_failures(wait=False)
        future = self.pool.submit(self._call, fn, args, kwargs)
        self.futures.append(future)
        return future

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        if self.failure is not None:
            raise self.failure
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            self.failure = exc
            raise

    def drain(self) -> None:
        self._raise_failures(wait=True)

    def _raise_failures(self, wait: bool) -> None:
        pending = []
        for future in self.futures:
            if wait or future.done():
                future.result()  # raises what the call raised
            else:
                pending.append(future)
        self.futures = pending

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            self.pool.shutdown(wait=True)
