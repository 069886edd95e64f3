"""Trials run at once on this machine (the local backend, ``parallelism=N``): what a worker process runs. The
processes themselves (the fork server, lanes, deaths, signals, exit) are :mod:`hyperflow.runtime.workers`'.

A worker runs :func:`hyperflow.engine.trial.run_trial` with the objective it is handed with each trial (it
pickles), warmed before its first trial (``objective.warm()``: e.g. the data loaded, the store opened) and
settled as it exits (``objective.settle()``: what its trials left in flight, e.g. their runs' last calls, sent;
a failure's line is left in a file that :meth:`WorkerPool.close` raises as :class:`WorkerFailed`). A SIGTERM
(the search relays Ctrl-C so) stops the trial in flight. The curves of trials finished elsewhere reach the
pruner of a trial in flight through :class:`PeerCurves`. This module imports nothing heavy until a pool is made.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperflow.errors import Terminated
from hyperflow.runtime import workers as processes
from hyperflow.runtime.workers import WorkerLanes


@dataclass
class _ThisWorker:
    """What a worker process keeps between its trials."""

    objective: Any = None  # the objective of its latest trial (settled as the worker exits)
    failures: str = ""  # file where it leaves the failure of what its trials left in flight


_here = _ThisWorker()


class WorkerFailed(RuntimeError):
    """What a worker's trials left in flight failed after the trial returned; the message is its one line."""


class PeerCurves:
    """The val_loss curves a trial's pruner compares with, as (trial number, curve): those known when it was
    dispatched, plus every curve the search appends to ``path`` (one JSON [number, curve] per line) while it runs.
    A file, not a ``multiprocessing.Manager``: a manager is one more process, which would outlive a search killed
    with -9."""

    def __init__(self, known: list[tuple[int, list[float]]], path: str) -> None:
        self.known, self.path = known, path
        self._read: list[tuple[int, list[float]]] = []
        self._offset = 0

    def _refresh(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._read += [(number, curve) for number, curve in map(json.loads, chunk[:end].splitlines())]
        self._offset += end

    def __iter__(self) -> Iterator[tuple[int, list[float]]]:
        self._refresh()
        return iter(self.known + self._read)

    def __len__(self) -> int:
        self._refresh()
        return len(self.known) + len(self._read)


def _settle() -> None:
    """The objective's ``settle()``; its failure's line is left in the failures file, where the search raises it
    (``WorkerPool.close``): nothing is lost silently."""
    settle = getattr(_here.objective, "settle", None)
    failure = settle() if settle is not None else ""
    if failure:
        with open(_here.failures, "a") as fh:
            fh.write(failure.replace("\n", " ") + "\n")


def _start_worker(failures: str) -> None:
    """A worker's start: where it leaves a failure, and its objective settled when the pool shuts it down."""
    from multiprocessing.util import Finalize

    _here.failures = failures
    Finalize(None, _settle, exitpriority=10)


def _warm(objective: Any) -> None:
    """A worker's first task while the search still records its settings: import torch._dynamo (which torch 2.13
    imports in every process that builds its first ``torch.optim`` optimizer, ~1 s) and ``objective.warm()``, so
    the first trial does not wait for them. Each worker imports it on its own core: in the fork server it would
    hold back every worker's start on one core while the others wait. A failure here is left to the first trial
    to report."""
    _here.objective = objective
    try:
        import torch._dynamo  # noqa: F401

        warm = getattr(objective, "warm", None)
        if warm is not None:
            warm()
    except Exception:
        pass


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can travel back to the search's process: as it is if it pickles, else a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _run(objective: Any, trial: Any) -> tuple[Any, Any]:
    """One trial in a worker: its record and what the objective handed back with it (``trial.keep``)."""
    from hyperflow.engine.trial import run_trial

    _here.objective = objective
    with processes.busy():  # a SIGTERM now stops the trial; the worker exits still busy (no orphan watch's exit)
        try:
            record = run_trial(objective, trial)
        except Terminated:  # the search stopped this trial (its run ends KILLED): this worker is done too
            processes.exit_worker()
        except Exception as exc:
            failure = _portable(exc)
            if failure is exc:
                raise
            raise failure from None
    return record, trial.keep


class WorkerPool(WorkerLanes):
    """``size`` worker processes running trials (:class:`~hyperflow.runtime.workers.WorkerLanes`: a worker that
    dies fails only its trial, and its lane gets a new one); ``curves`` is the file :class:`PeerCurves` read."""

    def __init__(self, size: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="hyperflow-peers-")
        self.curves = str(Path(self.dir, "curves.jsonl"))
        self.units = str(Path(self.dir, "units"))  # one byte per step a trial reported (a shared budget)
        Path(self.units).touch()
        self.failures = str(Path(self.dir, "failures.txt"))
        super().__init__(size, _start_worker, (self.failures,), _settle)

    def warm(self, objective: Any) -> None:
        """Start the workers now, each warming ``objective`` (not counted as running)."""
        self.start_each(_warm, objective)

    def submit(self, tag: Any, objective: Any, trial: Any) -> None:
        self.run(tag, _run, objective, trial)

    def add_curve(self, number: int, curve: list[float]) -> None:
        with open(self.curves, "a") as fh:
            fh.write(json.dumps([number, [float(f"{v:.6g}") for v in curve]]) + "\n")

    def close(self, kill: bool = False, check: bool = True) -> None:
        """Shut the workers down (``kill``: without waiting for the trials still queued or running). With
        ``check``, what a worker's trials left in flight and that failed is raised here (:class:`WorkerFailed`)."""
        failure = ""
        try:
            self.stop_workers(kill)
            if os.path.exists(self.failures):
                with open(self.failures) as fh:
                    failure = fh.readline().strip()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        if failure and check:
            raise WorkerFailed(failure)
