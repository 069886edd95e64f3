"""Trials run at once on this machine (``backend=local parallelism=N``): what a worker process runs. The
processes themselves (the fork server, lanes, deaths, signals, exit) are :mod:`hyperflow.runtime.workers`'.

The workers are forked from a server that imported torch, MLflow and hyperflow once, while the command imported
its own, so on a machine with idle cores they cost no start-up time. A worker runs
:func:`hyperflow.search.trial.run_trial` as a Spark executor does (its own MLflow client, the tracking settings
handed over in memory), with its calls on its own background thread, as the serial path does: creating a
trial's run overlaps its training, and its results and end overlap the next trial's start (the worker waits for
them before it trains again, and before it exits). A SIGTERM (the search relays Ctrl-C so) ends the trial's run
KILLED. The val_loss curves of trials finished elsewhere reach the pruner of a trial in flight through
:class:`PeerCurves`. This module imports nothing heavy until a pool is made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperflow.runtime import workers as processes
from hyperflow.runtime.workers import WorkerLanes


@dataclass
class _ThisWorker:
    """What a worker process (or a Spark Python worker: the data only) keeps between its trials."""

    datasets: dict[tuple, Any] = field(default_factory=dict)  # one search's trials share the data
    calls: Any = None  # this worker's tracking.BackgroundCalls
    failures: str = ""  # file where it leaves the failure of calls it sent after its last trial returned
    raised: Any = None  # the failure of its calls that a trial already raised to the search


_here = _ThisWorker()


def dataset_for(base: Any) -> Any:
    """The search's data in this process, loaded once per (data, split) settings."""
    from hyperflow.core.assembly import load_data

    key = (base.data, base.target, base.task, base.seed, base.val_size, base.test_size, base.split_column)
    if key not in _here.datasets:
        _here.datasets.clear()
        _here.datasets[key] = load_data(base)
    return _here.datasets[key]


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


def _finish_calls() -> None:
    """Wait for the calls still queued (the last trial's results and end); a failure is left in the
    failures file, where the search raises it (``WorkerPool.close``): nothing is lost silently."""
    calls = _here.calls
    if calls is None or (calls.failure is not None and calls.failure is _here.raised):
        return
    try:
        calls.drain()
    except BaseException as exc:
        from hyperflow.tracking import store_error_text

        with open(_here.failures, "a") as fh:
            fh.write(store_error_text(exc).replace("\n", " ") + "\n")


def _start_worker(env: dict[str, str], failures: str) -> None:
    """A worker's tracking: the search process's settings, and its calls sent from a background thread (run
    to their end when the pool shuts the worker down)."""
    from multiprocessing.util import Finalize

    from hyperflow.tracking import BackgroundCalls, search_store

    search_store.use_environment(env)
    _here.calls, _here.failures = BackgroundCalls(), failures
    Finalize(None, _finish_calls, exitpriority=10)  # run when the pool shuts the worker down


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

    with processes.busy():  # a SIGTERM now stops the trial; the worker exits still busy (no orphan watch's exit)
        try:
            with search_store.quiet_logs():  # a store failure is reported once, by the search, in one line
                _here.calls.drain()  # the previous trial's results and end: sent before this one starts
                record, setup = run_trial(task, point, dataset_for(task.base), _here.calls.submit)
        except Terminated:  # the search stopped this trial (its run ends KILLED): this worker is done too
            processes.exit_worker()
        except Exception as exc:
            _here.raised = _here.calls.failure  # reported now, not again when the worker exits
            failure = portable(exc)
            if failure is exc:
                raise
            raise failure from None
    state = None
    if setup is not None and record.status == names.TRIAL_OK and record.loss is not None and record.loss < keep_below:
        state = {k: v.detach().cpu() for k, v in setup.trainer.model.state_dict().items()}
    return record, state


class WorkerPool(WorkerLanes):
    """``size`` worker processes running trials (:class:`~hyperflow.runtime.workers.WorkerLanes`: a worker that
    dies fails only its trial, and its lane gets a new one); ``curves`` is the file :class:`PeerCurves` read."""

    def __init__(self, size: int, env: dict[str, str] | None = None) -> None:
        """``env``: the tracking settings the workers log with (default: this process's)."""
        if env is None:
            from hyperflow.tracking import search_store

            env = search_store.executor_environment()
        self.dir = tempfile.mkdtemp(prefix="hyperflow-peers-")
        self.curves = str(Path(self.dir, "curves.jsonl"))
        self.failures = str(Path(self.dir, "failures.txt"))
        super().__init__(size, _start_worker, (env, self.failures), _finish_calls)

    def warm(self, base: Any, experiment_id: str) -> None:
        """Start the workers now, each loading the data and opening the store (not counted as running)."""
        self.start_each(_warm, base, experiment_id)

    def submit(self, tag: Any, task: Any, point: dict[str, Any], keep_below: float) -> None:
        self.run(tag, _run, task, point, keep_below)

    def add_curve(self, curve: list[float]) -> None:
        with open(self.curves, "a") as fh:
            fh.write(json.dumps([float(f"{v:.6g}") for v in curve]) + "\n")

    def close(self, kill: bool = False, check: bool = True) -> None:
        """Shut the workers down (``kill``: without waiting for the trials still queued or running). With
        ``check``, a call a worker sent after its last trial returned and that failed is raised here (as
        ``StoreFailure``)."""
        from hyperflow.tracking import StoreFailure

        failure = ""
        try:
            self.stop_workers(kill)
            if os.path.exists(self.failures):
                with open(self.failures) as fh:
                    failure = fh.readline().strip()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if failure and check:
            raise StoreFailure(failure)
