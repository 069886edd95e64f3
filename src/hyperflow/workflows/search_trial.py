"""hyperflow's trainer as a search's objective (:class:`hyperflow.engine.trial.Objective`): one trial trains one
point in its own child run of the search, linked by an explicit parent id (MLflow's active run is thread-local),
reporting its val_loss per epoch to the trial's handle, which the pruner and the deadline decide from.

It runs in the search's process, on a worker process or on a Spark executor. Its MLflow calls (creating the
run, metrics, results, end of the run) go through ``send``: the search's own calls in its process, a worker's
background thread (the previous trial's calls are waited for before the next trial trains, and the last ones
as the worker exits: :meth:`TrainObjective.settle`), or at once on an executor; the trial waits for its run's
id only once it has trained. A failure (diverged, no finite val_loss, an invalid combination, an error in
training) ends the run FAILED and fails the trial (:class:`TrialFailed`): the search goes on. A store failure
or an MLflow refusal stops the search.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.assembly import load_data, setup_training
from hyperflow.core.data import Dataset
from hyperflow.core.trainer import Callback
from hyperflow.engine.trial import Trial, TrialFailed, TrialPruned
from hyperflow.errors import UsageError
from hyperflow.runtime import startup
from hyperflow.tracking import search_store, worker_environment
from hyperflow.tracking.faults import portable

TRIAL_FLUSH_SECS = 5.0  # a trial's per-epoch metrics are sent this often at most: most trials log in one call
_datasets: dict[tuple, Dataset] = {}  # per process (a worker, a Spark executor): one search's trials share the data
_calls: Any = None  # a worker's background calls (tracking.BackgroundCalls)
_reported: Any = None  # the failure of those calls that a trial already raised to the search


def dataset_for(base: TrainConfig) -> Dataset:
    """The search's data in this process, loaded once per (data, split) settings."""
    key = (base.data, base.target, base.task, base.seed, base.val_size, base.test_size, base.split_column)
    if key not in _datasets:
        _datasets.clear()
        _datasets[key] = load_data(base)
    return _datasets[key]


class _Reporting(Callback):
    """The trainer's val_loss per epoch to the trial's handle; the trainer stops when the trial should."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        try:
            self.trial.report(epoch, metrics["val_loss"])
        except TrialPruned:
            trainer.stop_requested = True


class _Failed(Exception):
    """Ends a failed trial's run as FAILED; caught right outside it."""


def _stops_the_search(exc: BaseException) -> bool:
    """A store failure or an MLflow refusal ends the whole search (the next trial would meet it too); any
    other error (a combination of settings the model cannot train with, torch refusing a shape, running out
    of memory, a bug in a user's model) fails only this trial, and ``max_consecutive_failures`` ends a search
    whose every trial fails the same way; so does an ``OSError`` the model raises (a file it cannot read)."""
    return tracking.is_store_error(exc, os_errors=False) or isinstance(exc, tracking.MlflowError)


class TrainObjective:
    """Train a point of ``base`` in a child run of search run ``parent_id``. ``where``: ``here`` (this process,
    ``send`` the search's calls, ``dataset`` loaded), ``worker`` or ``spark``. Picklable: the tracking settings
    travel with it, in memory."""

    def __init__(
        self,
        base: TrainConfig,
        experiment_id: str,
        parent_id: str,
        *,
        where: str = "here",
        send: Callable[..., Any] = tracking.call_now,
        dataset: Dataset | None = None,
    ) -> None:
        self.base, self.experiment_id, self.parent_id, self.where = base, experiment_id, parent_id, where
        self.send, self.dataset = send, dataset
        self.env = worker_environment.executor_environment()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "send": None, "dataset": None}

    def __call__(self, params: dict[str, Any], trial: Trial) -> float:
        if self.where == "here":
            return self._train(params, trial, self.send, self.dataset or dataset_for(self.base))
        worker_environment.use_environment(self.env)
        if self.where == "spark":
            return self._train(params, trial, tracking.call_now, dataset_for(self.base))
        global _calls, _reported
        _calls = _calls or tracking.BackgroundCalls()
        try:
            with search_store.quiet_logs():  # a store failure is reported once, by the search, in one line
                _calls.drain()  # the previous trial's results and end: sent before this one starts
                return self._train(params, trial, _calls.submit, dataset_for(self.base))
        except TrialFailed:
            raise
        except Exception as exc:
            _reported = _calls.failure  # reported now, not again when the worker exits
            failure = portable(exc)  # a store failure travels as one line
            if failure is exc:
                raise
            raise failure from None

    def warm(self) -> None:
        """On a worker, before its first trial: the data loaded and the store opened."""
        worker_environment.use_environment(self.env)
        dataset_for(self.base)
        worker_environment.open_store(self.experiment_id)

    def settle(self) -> str:
        """On a worker as it exits: wait for the calls still queued (the last trial's results and end); their
        failure's one line, or '' (a failure a trial already raised is not reported again)."""
        if _calls is None or (_calls.failure is not None and _calls.failure is _reported):
            return ""
        try:
            _calls.drain()
        except BaseException as exc:
            return tracking.store_error_text(exc)
        return ""

    def lost(self, trial: Trial, reason: str) -> None:
        """A trial whose worker process died: its run, if the worker had created it, ends FAILED with the reason
        (a kill -9 of the whole search leaves it to a resume instead)."""
        trial.run_id = search_store.end_lost_trial(self.experiment_id, self.parent_id, trial.number, reason)

    def _train(self, params: dict[str, Any], trial: Trial, send: Callable[..., Any], dataset: Dataset) -> float:
        number, base = trial.number, self.base
        if trial.threads is not None:
            base = base.replace(threads=trial.threads)
        tags = {
            names.TRIAL_NUMBER: str(number),
            names.TRIAL_PARAMS: json.dumps(params, default=str),
            names.SEARCH_RUN_ID: self.parent_id,
        }
        failed: TrialFailed | None = None
        try:
            with tracking.child_run(
                names.ROLE_TRIAL, self.experiment_id, self.parent_id, f"trial-{number:03d}", tags, send
            ) as run:
                # params ride with the first metrics call, the last epochs' metrics with the results: 3 calls
                logged = {**{k: str(v) for k, v in params.items()}, "trial_number": str(number)}
                logged["seed"] = str(params.get("seed", base.seed))
                flush = max(base.flush_secs, TRIAL_FLUSH_SECS)
                metrics = tracking.MlflowMetrics(run, flush, flush_at_end=False, params=logged, send=send)
                final: dict[str, float] = {}
                try:
                    try:
                        config = base.replace(**params)
                    except UsageError as exc:  # a combination the checks before the search could not foresee
                        raise UsageError(f"invalid combination of settings: {exc}") from None
                    setup = setup_training(config, dataset=dataset)
                    setup.trainer.callbacks += [metrics, _Reporting(trial)]
                    startup.end()  # a command's start-up is over: see hyperflow.runtime.startup
                    result = setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
                    if result.status == "diverged":
                        failed = TrialFailed(result.reason, result.epochs_run, trial.values)
                    elif result.best_epoch == 0:
                        failed = TrialFailed("no finite validation loss", result.epochs_run, trial.values)
                    else:
                        final = {
                            names.BEST_VAL_LOSS: result.best_val_loss,
                            names.BEST_EPOCH: result.best_epoch,
                            "epochs_run": result.epochs_run,
                        }
                except Exception as exc:  # whatever the trial's training raised fails the trial: the search goes on
                    if _stops_the_search(exc):
                        raise
                    failed = TrialFailed(f"{type(exc).__name__}: {exc}"[:500])
                trial.run_id = run.id  # waits for the creating call, and raises what it raised
                status = names.TRIAL_PRUNED if trial.should_prune() else names.TRIAL_OK
                status = names.TRIAL_FAILED if failed else status
                reason = failed.reason if failed else trial.stop_reason
                history = failed.history if failed else trial.values
                search_store.log_trial_end(run, final, metrics, number, status, reason, history, send=send)
                if failed:
                    raise _Failed
        except _Failed:
            raise failed from None
        if status == names.TRIAL_OK and result.best_val_loss < trial.best_so_far:  # the best model so far: kept
            state = setup.trainer.model.state_dict()
            here = self.where == "here"
            trial.keep = copy.deepcopy(state) if here else {k: v.detach().cpu() for k, v in state.items()}
        return result.best_val_loss
