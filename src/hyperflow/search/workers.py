"""Worker processes for trials run at once on this machine (``backend=local parallelism=N``).

The workers come from the fork server of :mod:`hyperflow.runtime.processes` (torch, MLflow and hyperflow
imported once, while the command imports its own), so on a machine with idle cores they cost no start-up
time. This module imports nothing heavy until a pool is made.

A worker runs :func:`hyperflow.search.trial.run_trial` as a Spark executor does (its own MLflow client, the
tracking settings handed over in memory), with its calls on its own background thread, as the serial path
does: creating a trial's run overlaps its training, and its results and end overlap the next trial's start
(the worker waits for them before it trains again, and before it exits). It ignores Ctrl-C (the search relays it
once, as SIGTERM, which ends
the trial's run KILLED) and stops itself when the search process is gone. The val_loss curves of trials
finished elsewhere reach the pruner of a trial in flight through :class:`PeerCurves`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from hyperflow.runtime.processes import context, main_module_hidden, process_identity, watch_parent

STOP_GRACE_SECS = 60.0  # how long trials get to end their runs KILLED after an interrupt
_datasets: dict[tuple, Any] = {}  # per worker process (or Spark Python worker): one search's trials share the data
_busy = threading.Event()  # set while this worker runs a trial
_calls: Any = None  # this worker's tracking.BackgroundCalls
_failures = ""  # file where a worker leaves the failure of calls it sent after its last trial returned
_raised: Any = None  # the failure of this worker's calls that a trial already raised to the search


def dataset_for(base: Any) -> Any:
    """The search's data in this process, loaded once per (data, split) settings."""
    from hyperflow.core.assembly import load_data

    key = (base.data, base.target, base.task, base.seed, base.val_size, base.test_size, base.split_column)
    if key not in _datasets:
        _datasets.clear()
        _datasets[key] = load_data(base)
    return _datasets[key]


class PeerCurves:
    """The val_loss curves a trial's pruner compares with: those known when it was dispatched, plus every
    curve the search appends to ``path`` (one JSON list per line) while it runs. A file, not a
    ``multiprocessing.Manager``: a manager is one more process, which would outlive a search killed with -9."""

    def __init__(self, known: list[list[float]], path: str) -> None:
        self.known, self.path = known, path
        self._read: list[list[float]] = []
        self._offset = 0

    def _refresh(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._read += [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
        self._offset += end

    def __iter__(self) -> Iterator[list[float]]:
        self._refresh()
        return iter(self.known + self._read)

    def __len__(self) -> int:
        self._refresh()
        return len(self.known) + len(self._read)


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM in a worker: a trial in flight stops and ends its run KILLED; an idle worker just exits."""
    from hyperflow.tracking import Terminated

    if _busy.is_set():
        raise Terminated(f"received signal {signum}")
    _exit()


def _finish_calls() -> None:
    """Wait for the calls still queued (the last trial's results and end); a failure is left in the
    failures file, where the search raises it (``WorkerPool.close``): nothing is lost silently."""
    if _calls is None or (_calls.failure is not None and _calls.failure is _raised):
        return
    try:
        _calls.drain()
    except BaseException as exc:
        from hyperflow.tracking import store_error_text

        with open(_failures, "a") as fh:
            fh.write(store_error_text(exc).replace("\n", " ") + "\n")


def _exit() -> None:
    """Leave now, once the calls already queued have gone out (a trial's run must not stay RUNNING)."""
    _finish_calls()
    os._exit(0)


def _start_worker(
    env: dict[str, str], search: tuple[int, str | None], path: list[str], cwd: str, failures: str
) -> None:
    """A worker's set-up: the search process's tracking settings, import path and working directory as they
    are now (the fork server keeps those of its start: relative data paths and ``model=module:fn`` must mean
    the same here), Ctrl-C left to the search (which relays it as SIGTERM), and a watch that stops the
    worker once the search process is gone (killed with -9; the fork server cannot tell: every worker holds
    its liveness pipe open)."""
    from multiprocessing.util import Finalize

    from hyperflow.tracking import BackgroundCalls, search_store

    global _calls, _failures
    sys.path[:] = path
    os.chdir(cwd)
    search_store.use_environment(env)
    _calls, _failures = BackgroundCalls(), failures
    Finalize(None, _finish_calls, exitpriority=10)  # run when the pool shuts the worker down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)

    def orphaned() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # a trial in flight ends its run KILLED
        while _busy.is_set():
            threading.Event().wait(0.1)
        _exit()

    watch_parent(search, orphaned)


def _warm(base: Any, experiment_id: str) -> None:
    """A worker's first task while the search still records its settings: load the data, open the store and
    import torch._dynamo (which torch 2.13 imports in every process that builds its first ``torch.optim``
    optimizer, ~1 s), so the first trial does not wait for them. Each worker imports it on its own core: in
    the fork server it would hold back every worker's start on one core while the others wait. A failure
    here is left to the first trial to report."""
    try:
        import torch._dynamo  # noqa: F401

        from hyperflow.tracking import search_store

        dataset_for(base)
        search_store.open_store(experiment_id)
    except Exception:
        pass


def _run(task: Any, point: dict[str, Any], keep_below: float) -> tuple[Any, dict[str, Any] | None]:
    """One trial in a worker: its record, and its trained weights when it beat ``keep_below`` (the search's
    best when it was dispatched), so the search can log the best model without training it again."""
    from hyperflow import names
    from hyperflow.search.trial import run_trial
    from hyperflow.tracking import Terminated, search_store
    from hyperflow.tracking.faults import portable

    _busy.set()
    try:
        with search_store.quiet_logs():  # a store failure is reported once, by the search, in one line
            _calls.drain()  # the previous trial's results and end: sent before this one starts
            record, setup = run_trial(task, point, dataset_for(task.base), _calls.submit)
    except Terminated:  # the search stopped this trial (its run ends KILLED): this worker is done too
        _exit()
    except Exception as exc:
        global _raised
        _raised = _calls.failure  # reported now, not again when the worker exits
        failure = portable(exc)
        if failure is exc:
            raise
        raise failure from None
    finally:
        _busy.clear()
    state = None
    if setup is not None and record.status == names.TRIAL_OK and record.loss is not None and record.loss < keep_below:
        state = {k: v.detach().cpu() for k, v in setup.trainer.model.state_dict().items()}
    return record, state


class WorkerPool:
    """``size`` worker processes running trials; ``curves`` is the file :class:`PeerCurves` read.

    Each worker is a pool of its own (a lane): a worker that dies (the out-of-memory killer, a crash in native
    code, ``kill -9``) breaks only its lane, whose trial then fails (:attr:`deaths` says how it died) while
    the other workers' trials go on, and the lane gets a new worker. One ``ProcessPoolExecutor`` for all
    would end every trial in flight with it."""

    def __init__(self, size: int, env: dict[str, str]) -> None:
        self.size = size
        self.dir = tempfile.mkdtemp(prefix="hyperflow-peers-")
        self.curves = str(Path(self.dir, "curves.jsonl"))
        self.failures = str(Path(self.dir, "failures.txt"))
        self.initargs = (env, process_identity(os.getpid()), list(sys.path), os.getcwd(), self.failures)
        self.lanes = [self._new_lane() for _ in range(size)]
        self.running: dict[Future, tuple[Any, int]] = {}  # future -> (what the caller attached to it, lane)
        self.deaths: dict[Future, str] = {}  # the trials whose worker died -> how it died

    def _new_lane(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=context(), initializer=_start_worker, initargs=self.initargs)

    @property
    def free(self) -> bool:
        return len(self.running) < self.size

    def warm(self, base: Any, experiment_id: str) -> None:
        """Start the workers now, each loading the data and opening the store (not counted as running)."""
        with main_module_hidden():
            for lane in self.lanes:
                lane.submit(_warm, base, experiment_id)

    def submit(self, tag: Any, task: Any, point: dict[str, Any], keep_below: float) -> None:
        busy = {lane for _, lane in self.running.values()}
        lane = next(i for i in range(self.size) if i not in busy)
        with main_module_hidden():  # the first submit starts the lane's worker
            try:
                future = self.lanes[lane].submit(_run, task, point, keep_below)
            except BrokenProcessPool:  # its worker died while idle (after its last trial returned)
                self._replace(lane)
                future = self.lanes[lane].submit(_run, task, point, keep_below)
        self.running[future] = (tag, lane)

    def _replace(self, lane: int) -> str:
        """A new worker for a lane whose worker died; returns how it died."""
        dead = self._processes(self.lanes[lane])
        for process in dead:
            process.join(STOP_GRACE_SECS)
        self.lanes[lane].shutdown(wait=False, cancel_futures=True)
        self.lanes[lane] = self._new_lane()
        codes = [p.exitcode for p in dead if p.exitcode]
        if not codes:
            return "its worker process died"
        code = codes[0]
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
            return f"its worker process was killed by {name}{hint}"
        return f"its worker process exited with code {code}"

    def finished(self, block: bool, timeout: float | None = None) -> list[tuple[Any, Future]]:
        """The trials done now (with ``block``: at least one, unless none is running or ``timeout`` passes).
        A trial whose worker died is done too: its future raises ``BrokenProcessPool`` and :attr:`deaths`
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

    def add_curve(self, curve: list[float]) -> None:
        with open(self.curves, "a") as fh:
            fh.write(json.dumps([float(f"{v:.6g}") for v in curve]) + "\n")

    def interrupt(self) -> None:
        """Ask every worker to stop its trial (its run ends KILLED): SIGTERM, once."""
        for process in self._all_processes():
            try:
                os.kill(process.pid, signal.SIGTERM)
            except (ProcessLookupError, OSError):
                pass

    def collect_stopped(self, collect: Callable[[bool, float], Any]) -> None:
        """After :meth:`interrupt`: ``collect`` the trials that still finish (or end KILLED) within the grace
        period, whatever they raise (a trial stopped by the interrupt, or the failure being handled)."""
        deadline = time.monotonic() + STOP_GRACE_SECS
        while self.running and time.monotonic() < deadline:
            try:
                collect(True, deadline - time.monotonic())
            except BaseException:
                pass

    def close(self, kill: bool = False, check: bool = True) -> None:
        """Shut the workers down (``kill``: without waiting for the trials still queued or running); a worker
        that does not exit within the grace period is killed (``shutdown(wait=True)`` would wait for ever).
        With ``check``, a call a worker sent after its last trial returned and that failed is raised here
        (as ``StoreFailure``)."""
        from hyperflow.tracking import StoreFailure

        processes, failure = self._all_processes(), ""
        try:
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
            if os.path.exists(self.failures):
                with open(self.failures) as fh:
                    failure = fh.readline().strip()
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
        if failure and check:
            raise StoreFailure(failure)
