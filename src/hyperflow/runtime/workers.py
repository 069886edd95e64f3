"""Worker processes as processes: each forked from the fork server (:mod:`hyperflow.runtime.processes`) in a lane
of its own, replaced when it dies, stopped by SIGTERM, killed when it does not exit; and, inside a worker, its
signals and its exit. What a worker runs (trials) is :mod:`hyperflow.engine.workers`'.

A worker ignores Ctrl-C (the command relays it once, as SIGTERM); SIGTERM stops the task in flight (it raises
``Terminated`` into it) or, when idle, ends the worker; and the worker stops itself once the command's process
is gone (killed with -9: the fork server cannot tell, every worker holds its liveness pipe open).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hyperflow.errors import Terminated
from hyperflow.runtime import signals
from hyperflow.runtime.processes import context, main_module_hidden, process_identity, watch_parent

STOP_GRACE_SECS = 60.0  # how long tasks get to end (their runs KILLED) after an interrupt
LOST_EXIT_CODE = 255  # what multiprocessing's forkserver reports for a child whose status it could not read

# ------------------------------------------------------------------------------------------ in a worker


@dataclass
class _Worker:
    """This worker process: whether a task runs, and what it does before it exits."""

    busy: threading.Event = field(default_factory=threading.Event)
    before_exit: Callable[[], None] = lambda: None


_worker = _Worker()


def _start(
    parent: tuple[int, str | None],
    path: list[str],
    cwd: str,
    before_exit: Callable[[], None],
    initializer: Callable[..., None],
    initargs: tuple,
) -> None:
    """A worker's start: the command's import path and working directory as they are now (the fork server keeps
    those of its start: relative data paths and ``model=module:fn`` must mean the same here), its signals, the
    watch on the command's process, then ``initializer(*initargs)``."""
    sys.path[:] = path
    os.chdir(cwd)
    _worker.before_exit = before_exit
    signals.worker_signals(_on_sigterm)

    def orphaned() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # a task in flight ends (its run KILLED)
        while _worker.busy.is_set():
            threading.Event().wait(0.1)
        exit_worker()

    watch_parent(parent, orphaned)
    initializer(*initargs)


def _on_sigterm() -> None:
    """SIGTERM in a worker: a task in flight stops; an idle worker just exits."""
    if _worker.busy.is_set():
        raise Terminated(f"received signal {signal.SIGTERM}")
    exit_worker()


@contextmanager
def busy() -> Iterator[None]:
    """A task runs in this worker while inside (a SIGTERM then stops it instead of ending the worker)."""
    _worker.busy.set()
    try:
        yield
    finally:
        _worker.busy.clear()


def exit_worker() -> None:
    """Leave now, once ``before_exit`` has run (e.g. the calls a task queued have gone out)."""
    _worker.before_exit()
    signals.leave(0)


# ------------------------------------------------------------------------------------------ in the command


class WorkerLanes:
    """``size`` worker processes, each a pool of its own (a lane): a worker that dies (the out-of-memory killer,
    a crash in native code, ``kill -9``) breaks only its lane, whose task then fails (:attr:`deaths` says how
    it died) while the other workers' tasks go on, and the lane gets a new worker. One ``ProcessPoolExecutor``
    for all would end every task in flight with it. Each worker starts with ``initializer(*initargs)``, and runs
    ``before_exit()`` before it leaves."""

    def __init__(
        self, size: int, initializer: Callable[..., None], initargs: tuple, before_exit: Callable[[], None]
    ) -> None:
        self.size = size
        here = (process_identity(os.getpid()), list(sys.path), os.getcwd())
        self.initargs = (*here, before_exit, initializer, initargs)
        self.lanes = [self._new_lane() for _ in range(size)]
        self.running: dict[Future, tuple[Any, int]] = {}  # future -> (what the caller attached to it, lane)
        self.deaths: dict[Future, str] = {}  # the tasks whose worker died -> how it died

    def _new_lane(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=context(), initializer=_start, initargs=self.initargs)

    @property
    def free(self) -> bool:
        return len(self.running) < self.size

    def start_each(self, fn: Callable[..., Any], *args: Any) -> None:
        """Start every worker now with ``fn(*args)`` as its first task (not counted as running)."""
        with main_module_hidden():
            for lane in self.lanes:
                lane.submit(fn, *args)

    def run(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on a free lane; ``tag`` comes back with its future from :meth:`finished`."""
        busy = {lane for _, lane in self.running.values()}
        lane = next(i for i in range(self.size) if i not in busy)
        with main_module_hidden():  # the first task starts the lane's worker
            try:
                future = self.lanes[lane].submit(fn, *args)
            except BrokenProcessPool:  # its worker died while idle (after its last task returned)
                self._replace(lane)
                future = self.lanes[lane].submit(fn, *args)
        self.running[future] = (tag, lane)

    def _replace(self, lane: int) -> str:
        """A new worker for a lane whose worker died; returns how it died."""
        dead = self._processes(self.lanes[lane])
        # The broken lane's own thread joins its dead worker; reading the exit code while it does would race it
        # (a forkserver child's code read by two threads at once comes back as 255 to one of them, CPython
        # gh-140867), so the lane is shut down, its thread joined, first: the code is then read once, settled.
        self.lanes[lane].shutdown(wait=True, cancel_futures=True)
        for process in dead:
            process.join(STOP_GRACE_SECS)
        self.lanes[lane] = self._new_lane()
        codes = [p.exitcode for p in dead if p.exitcode]
        if not codes:
            return "its worker process died"
        code = codes[0]
        if code == LOST_EXIT_CODE:  # multiprocessing's code for an exit status it could not read
            return "its worker process died (its exit status was lost)"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
            return f"its worker process was killed by {name}{hint}"
        return f"its worker process exited with code {code}"

    def finished(self, block: bool, timeout: float | None = None) -> list[tuple[Any, Future]]:
        """The tasks done now (with ``block``: at least one, unless none is running or ``timeout`` passes).
        A task whose worker died is done too: its future raises ``BrokenProcessPool`` and :attr:`deaths`
        says how the worker died; its lane has a new worker by then."""
        if block and self.running:
            wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        done = []
        for future in [f for f in self.running if f.done()]:
            tag, lane = self.running.pop(future)
            if isinstance(future.exception(), BrokenProcessPool):
                self.deaths[future] = self._replace(lane)
            done.append((tag, future))
        return done

    @staticmethod
    def _processes(lane: ProcessPoolExecutor) -> list[Any]:
        """A lane's worker process (the executor keeps it in a private mapping, ``None`` once shut down)."""
        return list((getattr(lane, "_processes", None) or {}).values())

    def _all_processes(self) -> list[Any]:
        return [p for lane in self.lanes for p in self._processes(lane)]

    def interrupt(self) -> None:
        """Ask every worker to stop its task (its run ends KILLED): SIGTERM, once."""
        for process in self._all_processes():
            try:
                os.kill(process.pid, signal.SIGTERM)
            except (ProcessLookupError, OSError):
                pass

    def collect_stopped(self, collect: Callable[[bool, float], Any]) -> None:
        """After :meth:`interrupt`: ``collect`` the tasks that still finish (or end KILLED) within the grace
        period, whatever they raise (a task stopped by the interrupt, or the failure being handled)."""
        deadline = time.monotonic() + STOP_GRACE_SECS
        while self.running and time.monotonic() < deadline:
            try:
                collect(True, deadline - time.monotonic())
            except BaseException:
                pass

    def stop_workers(self, kill: bool = False) -> None:
        """Shut the workers down (``kill``: without waiting for the tasks still queued or running); a worker
        that does not exit within the grace period is killed (``shutdown(wait=True)`` would wait for ever)."""
        processes = self._all_processes()
        if kill:
            for process in processes:
                if process.is_alive():
                    process.kill()
        for lane in self.lanes:
            lane.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(STOP_GRACE_SECS)
            if process.is_alive():
                process.kill()
                process.join()
