"""One trial, the one place a trial runs: in this process (grid and local searches) or on a Spark executor.

A trial trains one point in its own child run of the search, linked by an explicit parent id (MLflow's
active run is thread-local), with the pruner fed the earlier trials' val_loss curves. Its MLflow calls
(creating the run, metrics, results, end of the run) go through ``send``: at once (``tracking.call_now``),
or queued on the search's background calls (``BackgroundCalls.submit``, which returns a Future) so that
they overlap training; the trial waits for its run's id only once it has trained. A failure (diverged, no
finite val_loss, an invalid combination, an error in training) ends the run FAILED and returns a ``failed``
record: the search goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.assembly import Setup, setup_training
from hyperflow.core.data import Dataset
from hyperflow.core.pruning import PruningCallback, make_pruner
from hyperflow.errors import UsageError
from hyperflow.runtime import startup
from hyperflow.tracking import search_store

TRIAL_FLUSH_SECS = 5.0  # a trial's per-epoch metrics are sent this often at most: most trials log in one call


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


@dataclass
class TrialTask:
    """Everything one trial needs, picklable: it runs in this process or on a Spark executor."""

    base: TrainConfig
    pruner: tuple[str, int, int, int, int]  # name, min_epochs, reduction_factor, startup trials, patience
    experiment_id: str
    parent_id: str
    number: int
    history: list[list[float]]  # per-epoch val_loss of the earlier trials the pruner compares with
    deadline: float | None = None  # wall clock (time.time()): it holds on other processes too


def run_trial(
    task: TrialTask, point: dict[str, Any], dataset: Dataset, send: Callable[..., Any] = tracking.call_now
) -> tuple[TrialRecord, Setup | None]:
    """Train ``point`` in its own child run; returns its record and, unless it failed, its trained setup."""
    try:
        return _train(task, point, dataset, send)
    except _Failed as failed:
        return failed.record, None


def lost_trial(experiment_id: str, parent_id: str, number: int, point: dict[str, Any], death: str) -> TrialRecord:
    """The record of a trial whose worker process died; its run, if the worker had created it, ends FAILED
    with the reason (a kill -9 of the whole search leaves it to a resume instead)."""
    reason = f"{death} during the trial"
    run_id = search_store.end_lost_trial(experiment_id, parent_id, number, reason)
    return TrialRecord(number, run_id, point, names.TRIAL_FAILED, None, 0, reason=reason)


def _stops_the_search(exc: BaseException) -> bool:
    """A store failure or an MLflow refusal ends the whole search (the next trial would meet it too); any
    other error (a combination of settings the model cannot train with, torch refusing a shape, running out
    of memory, a bug in a user's model) fails only this trial, and ``max_consecutive_failures`` ends a search
    whose every trial fails the same way; so does an ``OSError`` the model raises (a file it cannot read)."""
    return tracking.is_store_error(exc, os_errors=False) or isinstance(exc, tracking.MlflowError)


class _Failed(Exception):
    """Ends a failed trial's run as FAILED; caught right outside it."""

    def __init__(self, record: TrialRecord) -> None:
        self.record = record


def _train(
    task: TrialTask, point: dict[str, Any], dataset: Dataset, send: Callable[..., Any]
) -> tuple[TrialRecord, Setup | None]:
    number = task.number
    pruning = PruningCallback(make_pruner(*task.pruner), task.history, task.deadline)
    tags = {
        names.TRIAL_NUMBER: str(number),
        names.TRIAL_PARAMS: json.dumps(point, default=str),
        names.SEARCH_RUN_ID: task.parent_id,
    }
    record = TrialRecord(number, "", point, names.TRIAL_FAILED, None, 0)
    setup = None
    with tracking.child_run(
        names.ROLE_TRIAL, task.experiment_id, task.parent_id, f"trial-{number:03d}", tags, send
    ) as run:
        # params ride with the first metrics call, the last epochs' metrics with the results: 3 calls a trial
        params = {
            **{k: str(v) for k, v in point.items()},
            "trial_number": str(number),
            "seed": str(point.get("seed", task.base.seed)),
        }
        metrics = tracking.MlflowMetrics(
            run, max(task.base.flush_secs, TRIAL_FLUSH_SECS), flush_at_end=False, params=params, send=send
        )
        final: dict[str, float] = {}
        try:
            try:
                config = task.base.replace(**point)
            except UsageError as exc:  # a combination the checks before the search could not foresee
                raise UsageError(f"invalid combination of settings: {exc}") from None
            setup = setup_training(config, dataset=dataset)
            setup.trainer.callbacks += [metrics, pruning]
            startup.end()  # a command's start-up is over: see hyperflow.runtime.startup
            result = setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
            record.history, record.epochs = pruning.values, result.epochs_run
            if result.status == "diverged":
                record.reason = result.reason
            elif result.best_epoch == 0:
                record.reason = "no finite validation loss"
            else:
                record.status = names.TRIAL_PRUNED if pruning.reason else names.TRIAL_OK
                record.reason = pruning.reason
                record.loss = result.best_val_loss
                final = {
                    names.BEST_VAL_LOSS: result.best_val_loss,
                    names.BEST_EPOCH: result.best_epoch,
                    "epochs_run": result.epochs_run,
                }
        except Exception as exc:  # whatever the trial's training raised fails the trial: the search goes on
            if _stops_the_search(exc):
                raise
            record.reason = f"{type(exc).__name__}: {exc}"[:500]
        record.run_id = run.id  # waits for the creating call, and raises what it raised
        failed = record.status == names.TRIAL_FAILED
        send(
            tracking.log_results,
            run,
            {} if failed else final,
            search_store.trial_end_tags(number, record.status, record.reason, record.history),
            pending=metrics.pending,
            params=metrics.pending_params,
        )
        if failed:
            raise _Failed(record)
    return record, setup
