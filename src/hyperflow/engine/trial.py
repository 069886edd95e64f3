"""A trial as the engine sees it: the handle an objective gets, the objective's protocol, and the record a
finished trial leaves. The engine knows no runs and no training: an objective is anything
``objective(params, trial) -> loss`` (hyperflow's trainer in a child run of the search is one,
:mod:`hyperflow.workflows.search_trial`).

The handle is the one seam between the engine and whoever runs the trial (the design of Optuna's ``Trial``):
the objective reports an intermediate value per step (:meth:`Trial.report`), which raises :class:`TrialPruned`
once the trial should stop (the pruner decided from the earlier trials' curves, or the search's deadline passed;
:meth:`Trial.should_prune` says so too); it names the run it logs into (:attr:`Trial.run_id`) and may hand
something back with the trial (:attr:`Trial.keep`, e.g. the trained weights of a trial that beat
:attr:`Trial.best_so_far`). It returns the trial's loss, or raises :class:`TrialFailed` (the search goes on) or
lets :class:`TrialPruned` through (the trial is pruned at the best value it reported); any other exception stops
the search.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hyperflow import names
from hyperflow.core.pruning import NoPruner, Peer, Pruner


@dataclass
class TrialRecord:
    number: int
    run_id: str
    params: dict[str, Any]
    status: str  # ok | failed | pruned
    loss: float | None
    epochs: int
    history: list[float] = field(default_factory=list)
    reason: str = ""


class TrialFailed(Exception):
    """Raised by an objective: the trial failed for ``reason``, after ``epochs`` steps whose values were
    ``history``; the search goes on."""

    def __init__(self, reason: str, epochs: int = 0, history: Iterable[float] = ()) -> None:
        super().__init__(reason)
        self.reason, self.epochs, self.history = reason, epochs, list(history)


class TrialPruned(Exception):
    """Raised by :meth:`Trial.report` once the trial should stop: the pruner stopped it, or the search's deadline
    passed (the message says which). An objective may catch it to clean up, then return its value or raise it
    again; let through, the trial ends pruned at the best value it reported."""


class Trial:
    """One trial's handle: its number and point, the pruner's view of the earlier trials (``peers``: their
    number and per-step values each), the search's wall-clock ``deadline``, the best loss so far, the CPU
    threads it may use (None: the objective's own setting) and the units of work (reports) left in the search's
    budget (its own reports count against them, or with ``units_file`` those of every trial in flight).
    Picklable: it travels to worker processes."""

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        pruner: Pruner | None = None,
        peers: Iterable[Peer] = (),
        deadline: float | None = None,
        best_so_far: float = math.inf,
        threads: int | None = None,
        units_left: int | None = None,
    ) -> None:
        self.number, self.params, self.pruner, self.peers = number, params, pruner or NoPruner(), peers
        self.deadline, self.best_so_far, self.threads = deadline, best_so_far, threads
        self.units_left = units_left  # the steps it may report before the search's budget is used (None: no budget)
        # trials at once: a file every trial in flight adds a byte to per step, so that the units left are shared
        self.units_file: str | None = None
        self.values: list[float] = []  # the values reported, one per step
        self.stop_reason = ""  # why it should stop: the pruner's decision, or the deadline
        self.run_id = ""  # the run the objective logs this trial into (the engine hands it back)
        self.keep: Any = None  # what the objective hands back with the trial
        # where the reported values go besides the pruner (set by whoever runs the trial: its run's metrics)
        self.on_report: Callable[[int, float, dict[str, float]], None] | None = None

    def report(self, step: int, value: float, **metrics: float) -> None:
        """An intermediate value to minimise at ``step`` (e.g. val_loss after an epoch; a non-finite one counts as
        infinitely bad), with other ``metrics`` of that step for the trial's run. Raises :class:`TrialPruned`
        once the trial should stop. The pruner compares trials at their n-th report, whatever their steps."""
        value = float(value)
        self.values.append(value if math.isfinite(value) else math.inf)
        if self.on_report is not None:
            self.on_report(step, value, metrics)
        if self.deadline is not None and time.time() >= self.deadline:
            self.stop_reason = "timeout"
        elif self.units_left is not None and self._units_used() >= self.units_left:
            self.stop_reason = "budget"
        elif not self.stop_reason and self.pruner.judge(self.number, list(self.peers), len(self.values), self.values):
            self.stop_reason = f"{type(self.pruner).__name__} at epoch {step}"
        if self.stop_reason:
            raise TrialPruned(self.stop_reason)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "on_report": None}  # the hook is the process's that runs the trial

    def _units_used(self) -> int:
        """The units counted against ``units_left``: this trial's steps, or (``units_file``) every trial's."""
        if self.units_file is None:
            return len(self.values)
        with open(self.units_file, "ab") as fh:
            fh.write(b".")
        return os.path.getsize(self.units_file)

    def should_prune(self) -> bool:
        return bool(self.stop_reason)


class Objective(Protocol):
    """What a search minimises. Objectives run in worker processes may also define ``warm()`` (once per worker,
    before its first trial), ``settle() -> str`` (once per worker as it exits: what its trials left in flight
    sent, or the one line of their failure) and ``lost(trial, reason)`` (in the search's process, for a trial
    whose worker died: its run, if any, ended and named in ``trial.run_id``)."""

    def __call__(self, params: dict[str, Any], trial: Trial) -> float: ...


def run_trial(objective: Objective, trial: Trial) -> TrialRecord:
    """Run one trial: its record (ok, pruned when it stopped early, failed when the objective said so)."""
    try:
        loss = objective(trial.params, trial)
    except TrialFailed as failed:
        return TrialRecord(
            trial.number, trial.run_id, trial.params, names.TRIAL_FAILED, None, failed.epochs or len(trial.values),
            failed.history or trial.values, failed.reason,
        )  # fmt: skip
    except TrialPruned as pruned:  # let through: pruned at the best value it reported
        loss = min(trial.values, default=math.inf)
        if not math.isfinite(loss):
            reason = f"pruned ({pruned}) before it reported a finite value"
            return TrialRecord(trial.number, trial.run_id, trial.params, names.TRIAL_FAILED, None,
                               len(trial.values), trial.values, reason)  # fmt: skip
    status = names.TRIAL_PRUNED if trial.should_prune() else names.TRIAL_OK
    epochs = len(trial.values)
    return TrialRecord(trial.number, trial.run_id, trial.params, status, loss, epochs, trial.values, trial.stop_reason)


def lost_trial(objective: Objective, trial: Trial, death: str) -> TrialRecord:
    """The record of a trial whose worker process died (``death`` says how)."""
    reason = f"{death} during the trial"
    lost = getattr(objective, "lost", None)
    if lost is not None:
        lost(trial, reason)
    return TrialRecord(trial.number, trial.run_id, trial.params, names.TRIAL_FAILED, None, 0, reason=reason)
