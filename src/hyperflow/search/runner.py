"""The ``search`` workflow: one parent run, one child run per trial, hyperopt choosing the points.

Trials run in this process (no subprocess per trial) or, with ``backend=spark``, on Spark executors through
hyperopt's SparkTrials; each in a child run linked by an explicit ``parent_run_id`` (MLflow's active run
is thread-local). MLflow is the source of truth: ``resume`` rebuilds hyperopt's history from the trials whose
results reached MLflow, so a kill loses at most the trials in flight.

Resume continues the search it resumes: the suggestion for hyperopt trial id ``t`` is drawn with a seed
derived from (``seed``, ``t``) alone (:func:`trial_seed`), and a trial's number is its hyperopt id, so a
history rebuilt from MLflow puts the generator exactly where the uninterrupted search had it: the resumed
search proposes what that search would have proposed next (for random search, always; for TPE, given the
same losses). The literature presets not yet run are queued again when a search was interrupted among them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Collection

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK, Trials, fmin, rand, tpe
from hyperopt.exceptions import AllTrialsFailed
from mlflow.exceptions import MlflowException
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hyperflow import tracking
from hyperflow.tracking import runs as tracking_runs
from hyperflow.config import PRESETS, TrainConfig, coerce
from hyperflow.errors import UsageError
from hyperflow.core.plots import importance as importance_plot
from hyperflow.core.plots import search_progress
from hyperflow.search.importance import parameter_importance
from hyperflow.core.pruning import PruningCallback, make_pruner, peer_statuses
from hyperflow.config.search import SearchConfig
from hyperflow.search.space import (check_grid, complete_point, contains, default_space_path, flatten, grid_points,
                                    load_space, probe_points, to_hyperopt, to_vals, validate_space)
from hyperflow.core.data import Dataset
from hyperflow.core.assembly import Setup, load_data, setup_training
from hyperflow.workflows.lr_find import lr_find_in_run

STATUS_TAG = "hyperflow.trial_status"
NUMBER_TAG = "hyperflow.trial_number"
HISTORY_TAG = "hyperflow.val_loss_history"  # per-epoch val_loss as JSON: pruning and resume read it in one call
PROGRESS_FLUSH_SECS = 5.0  # the parent's best_val_loss curve is sent in batches this often
TRIAL_FLUSH_SECS = 5.0  # a trial's per-epoch metrics too (at least): most trials then log in one call at the end
SETTINGS_TAG = "hyperflow.settings"  # JSON: the current values of the settings a resume may change
SPACE_TAG = "hyperflow.space"  # the space in use, as YAML (a resume without space= continues with it)
RESUMES_TAG = "hyperflow.resumes"  # how many times the search was resumed
MODEL_STATUS_TAG = "hyperflow.model_status"  # logged | failed: <error>
# what a resume may change: the budget, the stop rules, where trials run and what happens to the best model
# (the search run records them in SETTINGS_TAG, and each change as param resume.<n>.<key>); every other
# setting defines the trials and the comparison between them, and a resume keeps it
RESUMABLE_SEARCH = ("max_evals", "timeout", "early_stop", "loss_threshold", "max_consecutive_failures", "register",
                    "model_name", "refit", "backend", "parallelism", "spark_master", "seed_presets")
RESUMABLE_TRAIN = ("threads", "device", "flush_secs", "experiment", "run_name")
FORCED_TRAIN = ("log_model", "model_name", "progress", "tensorboard")  # set by the search for every trial
FULL_CHECK_POINTS = 5_000  # a grid up to this size has every combination checked before the first trial


class SearchStopped(RuntimeError):
    """Raised to end the search early (too many failures in a row)."""


class SearchFailed(Exception):
    """The search could not finish its job (the store failed, the model could not be logged): the message is
    one line that says what failed, what is kept and the command that continues. The CLI prints it, exit 1."""

    exit_code = 1


def trial_seed(seed: int, tid: int) -> int:
    """The seed of the suggestion for hyperopt trial id ``tid``: a function of the search's seed and the id
    alone, so that a resumed search draws for its next trial what the uninterrupted one would have drawn
    (fmin's own ``rstate`` restarts from the seed on every call and would replay the first suggestions)."""
    return int(np.random.SeedSequence([abs(int(seed)), int(tid)]).generate_state(1)[0]) % (2**31 - 1)


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
class SearchOutcome:
    run_id: str
    experiment_id: str
    records: list[TrialRecord]
    best: TrialRecord | None
    stop_reason: str
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    registered: tuple[str, str] | None = None  # (name, version)


@dataclass
class TrialTask:
    """Everything one trial needs, picklable: it runs in this process or on a Spark executor."""

    base: TrainConfig
    pruner: tuple[str, int, int, int]  # name, min_epochs, reduction_factor, startup trials
    experiment_id: str
    parent_id: str
    number: int
    history: list[list[float]]  # per-epoch val_loss of the earlier ok/pruned trials
    deadline: float | None = None  # wall clock (time.time()): it holds on other processes too


def execute_trial(task: TrialTask, point: dict[str, Any], dataset: Dataset,
                  send: Callable[..., Any] = tracking.call_now) -> tuple[TrialRecord, Setup | None]:
    """Train one point in its own child run; failures become a FAILED run and a ``failed`` record.
    ``send`` carries the closing calls (results, end of the run): at once, or in the background."""
    number = task.number
    pruning = PruningCallback(make_pruner(*task.pruner), task.history, task.deadline)
    tags = {NUMBER_TAG: str(number), "hyperflow.trial_params": json.dumps(point, default=str),
            "hyperflow.search_run_id": task.parent_id}
    record = TrialRecord(number, "", point, "failed", None, 0)
    setup = None
    with tracking.child_run("trial", task.experiment_id, task.parent_id, f"trial-{number:03d}", tags,
                            send) as run_id:
        record.run_id = run_id
        # params ride with the first metrics call, the last epochs' metrics with the results: 3 calls a trial
        params = {**{k: str(v) for k, v in point.items()}, "trial_number": str(number),
                  "seed": str(point.get("seed", task.base.seed))}
        metrics = tracking.MlflowMetrics(run_id, max(task.base.flush_secs, TRIAL_FLUSH_SECS), flush_at_end=False,
                                         params=params)
        final: dict[str, float] = {}
        try:
            try:
                config = task.base.replace(**point)
            except UsageError as exc:  # a combination the checks before the search could not foresee
                raise UsageError(f"invalid combination of settings: {exc}") from None
            setup = setup_training(config, dataset=dataset)
            setup.trainer.callbacks += [metrics, pruning]
            result = setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
            record.history, record.epochs = pruning.values, result.epochs_run
            if result.status == "diverged":
                record.reason = result.reason
            elif result.best_epoch == 0:
                record.reason = "no finite validation loss"
            else:
                record.status = "pruned" if pruning.reason else "ok"
                record.reason = pruning.reason
                record.loss = result.best_val_loss
                final = {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                         "epochs_run": result.epochs_run}
        except (UsageError, RuntimeError, FloatingPointError, MemoryError) as exc:  # the search goes on
            record.reason = f"{type(exc).__name__}: {exc}"[:500]
        history = json.dumps([float(f"{v:.6g}") for v in record.history])
        # a pruned or failed trial says so in its name, which the runs table shows by default
        name = {"pruned": f"trial-{number:03d}-pruned", "failed": f"trial-{number:03d}-failed"}.get(record.status)
        send(tracking.log_results, run_id, final if record.status != "failed" else {},
             {STATUS_TAG: record.status, "hyperflow.trial_reason": record.reason,
              **({HISTORY_TAG: history} if len(history) <= 5000 else {}),
              **({"mlflow.runName": name} if name else {})},
             pending=metrics.pending, params=metrics.pending_params)
        if record.status == "failed":
            raise _TrialFailed(record)
    return record, setup


class _TrialFailed(Exception):
    """Ends a failed trial's run as FAILED; caught right outside it."""

    def __init__(self, record: TrialRecord) -> None:
        self.record = record


def run_trial_safely(task: TrialTask, point: dict[str, Any], dataset: Dataset,
                     send: Callable[..., Any] = tracking.call_now) -> tuple[TrialRecord, Setup | None]:
    try:
        return execute_trial(task, point, dataset, send)
    except _TrialFailed as failed:
        return failed.record, None


class SearchRunner:
    """Runs a search for ``base`` training settings over a YAML space, tracked in MLflow."""

    def __init__(self, search: SearchConfig, base: TrainConfig, spark_session: Any = None,
                 given: Collection[str] | None = None) -> None:
        """``given``: the settings the user set (command line, config file); a resume takes every other one
        from the search it resumes. Without it, a setting counts as given when it differs from its default."""
        self.search, self.spark_session = search, spark_session
        self.given = None if given is None else set(given)
        self.base = base.replace(log_model=False, model_name=None, progress=False, tensorboard=False)
        self.client = MlflowClient()
        self.records: list[TrialRecord] = []
        self.best_state: dict[str, Any] | None = None
        self.parent_id = ""
        self.experiment_id = ""
        self.deadline: float | None = None  # wall clock
        self.stop_reason = ""
        self.progress: list[Metric] = []
        self.progress_sent = time.monotonic()
        self.calls = tracking.BackgroundCalls()
        self.resumed: Any = None  # the search run a resume continues (as read before it is reopened)
        self.changed: dict[str, str] = {}  # settings a resume changed: key -> new value
        self.space_text = ""
        self.space_edited = False
        self.highest_number = -1  # of every trial run of this search, those killed included
        self.trials: Any = None  # hyperopt's Trials while fmin runs

    # ------------------------------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any run is written (a resume reads its run only)."""
        if self.search.backend == "spark":
            from hyperflow.search import spark

            spark.check_available(self.spark_session)
        if self.search.resume:
            self.resumed = self._resume_run()
            self._keep_recorded_settings(self.resumed)
        self.dataset = load_data(self.base)
        if self.resumed is not None:
            recorded = self.resumed.data.tags.get("hyperflow.data_fingerprint")
            if recorded and recorded != self.dataset.fingerprint:
                raise UsageError(f"resume={self.search.resume}: the data differ from those the search ran on "
                                 f"({self.base.data}: {self.dataset.fingerprint[:20]}…, the search: {recorded[:20]}…): "
                                 f"resume with the same data, or start a new search")
        self.space = self._load_space()
        self._check_space()

    def _resume_run(self) -> Any:
        rid = self.search.resume
        try:
            run = self.client.get_run(rid)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise UsageError(f"resume={rid}: no such run in {mlflow.get_tracking_uri()}") from None
            if tracking.is_store_error(exc):
                raise SearchFailed(f"the tracking store {mlflow.get_tracking_uri()} failed while reading run "
                                   f"{rid}: {tracking.store_error_text(exc)}") from None
            raise UsageError(f"resume={rid}: cannot read that run: {tracking.one_line(exc)}") from None
        if run.data.tags.get(tracking.ROLE_TAG) != "search":
            raise UsageError(f"resume={rid} is not a search run (its role is "
                             f"{run.data.tags.get(tracking.ROLE_TAG)!r}): pass the id of the parent search run")
        if run.info.lifecycle_stage == "deleted":
            raise UsageError(f"resume={rid}: that search run was deleted: restore it (mlflow runs restore) or "
                             f"start a new search")
        return run

    def _keep_recorded_settings(self, run: Any) -> None:
        """A resume continues with the settings the search recorded. A setting given here replaces the
        recorded one if a resume may change it (the budget, the stop rules, where trials run, what happens to
        the best model); another value for any other setting is refused (it would change what the trials
        are): one line, nothing written. ``data`` may name the same file by another path (the data's
        fingerprint is compared once they are loaded)."""
        params, tags = run.data.params, run.data.tags
        current = json.loads(tags.get(SETTINGS_TAG) or "{}")
        search_changes: dict[str, Any] = {}
        train_changes: dict[str, Any] = {}
        for cls, obj, changes, resumable, skip in (
                (SearchConfig, self.search, search_changes, RESUMABLE_SEARCH, ("resume", "space")),
                (TrainConfig, self.base, train_changes, RESUMABLE_TRAIN, FORCED_TRAIN)):
            for f in dataclasses.fields(cls):
                if f.name in skip:
                    continue
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                value = getattr(obj, f.name)
                given = f.name in self.given if self.given is not None else value != default
                if isinstance(default, dict):
                    recorded: Any = _recorded_mapping(params, f.name)
                    if recorded is None:
                        recorded = {}
                    if recorded == {k: str(v) for k, v in value.items()}:
                        continue
                    if not given:
                        changes[f.name] = {k: yaml.safe_load(v) for k, v in recorded.items()}
                        continue
                    raise UsageError(_kept_setting(self.search.resume, f.name, recorded, value))
                recorded = current.get(f.name, params.get(f"resolved.{f.name}", params.get(f.name)))
                if recorded is None:
                    if default is not None:
                        continue  # not recorded (an older search): nothing to compare with
                    recorded = "None"
                if tracking_runs._same_value(str(value), str(recorded)):
                    continue
                if not given:
                    source = tags.get("hyperflow.core.data", "")
                    if f.name == "data" and source and not source.startswith("builtin:") and Path(source).is_file():
                        recorded = source  # the file's absolute path: a relative one may not hold here
                    changes[f.name] = coerce(f.name, recorded, cls)
                elif f.name in resumable:
                    self.changed[f.name] = str(value)
                elif not (f.name == "data" and run.data.tags.get("hyperflow.data_fingerprint")):
                    raise UsageError(_kept_setting(self.search.resume, f.name, recorded, value))
        if search_changes:
            self.search = dataclasses.replace(self.search, **search_changes)
        if train_changes:
            self.base = self.base.replace(**train_changes)

    def _load_space(self) -> dict[str, Any]:
        """The space file given, else (resuming) the space the search ran with, else the task's default."""
        recorded = self.resumed.data.tags.get(SPACE_TAG) if self.resumed is not None else None
        if self.search.space:
            self.space_path = Path(self.search.space)
            space = load_space(self.space_path)
        elif recorded:
            self.space_path = None
            space = yaml.safe_load(recorded)
            validate_space(space)
        else:
            self.space_path = default_space_path(self.dataset.task)
            space = load_space(self.space_path)
        self.space_text = yaml.safe_dump(space, sort_keys=False)
        if recorded and yaml.safe_load(recorded) != space:
            self.space_edited = True
        return space

    def _check_space(self) -> None:
        """Every value the space can give makes a valid configuration, before the first trial: each choice
        value and both ends of each range, in every branch (and every combination of a small grid)."""
        size = check_grid(self.space) if self.search.strategy == "grid" else None
        points = list(probe_points(self.space))
        if size is not None and size <= FULL_CHECK_POINTS:
            points += grid_points(self.space)
        for point in points:
            self._config(point)
        setup_training(self._config(points[0]), dataset=self.dataset)

    def _config(self, point: dict[str, Any]) -> TrainConfig:
        try:
            return self.base.replace(**point)
        except UsageError as exc:
            raise UsageError(f"search space gives an invalid combination {point}: {exc}") from None

    # ------------------------------------------------------------------------------------- resume
    def _read_children(self) -> list[TrialRecord]:
        """The trials of this search whose results reached MLflow, whatever became of their closing call (a
        kill -9 between the results and the end of the run, or while the best model was logged, leaves them
        RUNNING: they end as they finished). Children left RUNNING without results end KILLED."""
        children = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}' and tags.`hyperflow.role` = 'trial'",
            max_results=50000)
        candidates = []
        for run in children:
            tags = run.data.tags
            if NUMBER_TAG in tags:
                self.highest_number = max(self.highest_number, int(tags[NUMBER_TAG]))
            status = tags.get(STATUS_TAG)
            if status not in ("ok", "failed", "pruned"):
                if run.info.status == "RUNNING":
                    tracking.end_run_quietly(run.info.run_id, "KILLED")
                continue
            candidates.append(run)
        # runs that ended as they should first: a number run again after an older resume keeps its latest run
        candidates.sort(key=lambda r: (r.info.status not in ("FINISHED", "FAILED"), -(r.info.start_time or 0)))
        records, numbers = [], set()
        for run in candidates:
            tags, status = run.data.tags, run.data.tags[STATUS_TAG]
            number = int(tags[NUMBER_TAG])
            if number in numbers:
                continue
            numbers.add(number)
            ended = "FAILED" if status == "failed" else "FINISHED"
            if run.info.status != ended:
                tracking.end_run_quietly(run.info.run_id, ended)
            loss = run.data.metrics.get("best_val_loss")
            if HISTORY_TAG in tags:
                history = [float(v) for v in json.loads(tags[HISTORY_TAG])]
            else:  # written before the tag existed, or too long for a tag
                history = [m.value for m in sorted(self.client.get_metric_history(run.info.run_id, "val_loss"),
                                                   key=lambda m: m.step)]
            records.append(TrialRecord(number, run.info.run_id, json.loads(tags.get("hyperflow.trial_params", "{}")),
                                       status, loss if status != "failed" else None, len(history), history,
                                       tags.get("hyperflow.trial_reason", "")))
        return sorted(records, key=lambda r: r.number)

    def _in_space(self) -> list[TrialRecord]:
        """The trials hyperopt learns from: those whose point the (possibly edited) space can produce."""
        return [r for r in self.records if contains(self.space, r.params)]

    def _fill_trials(self, trials: Trials) -> Trials:
        """hyperopt's history from ``self.records``, as if those trials had just run: trial id = trial number,
        so the next id (and its suggestion seed) is the one the interrupted search was about to use."""
        docs = []
        for record in self._in_space():
            result = ({"status": STATUS_OK, "loss": record.loss} if record.loss is not None
                      else {"status": STATUS_FAIL, "failure": record.reason})
            docs.append(self._trial_doc(trials, record.number, to_vals(self.space, record.params), result))
        for doc in docs:
            doc["state"] = JOB_STATE_DONE
        if docs:
            trials.insert_trial_docs(docs)
            trials.refresh()
        trials._ids.update(range(self._next_number()))  # new ids continue after every number used
        return trials

    def _next_number(self) -> int:
        """Local trials run one at a time: a trial killed in flight is the last one, and its number (and
        suggestion) comes again. Spark's trials in flight leave gaps; their numbers are not used again."""
        kept = max((r.number for r in self.records), default=-1) + 1
        return max(kept, self.highest_number + 1) if self.search.backend == "spark" else kept

    # ------------------------------------------------------------------------------------- trials
    def _objective(self, sample: dict[str, Any]) -> dict[str, Any]:
        point = flatten(sample)
        record = self.run_trial(point, self._running_tid())
        if record.status == "failed":
            return {"status": STATUS_FAIL, "failure": record.reason}
        # a pruned trial reports the best val_loss it reached: a pessimistic but real observation,
        # so TPE counts it among the bad points instead of ignoring it (as it would a failure)
        return {"status": STATUS_OK, "loss": record.loss}

    def _running_tid(self) -> int | None:
        """The hyperopt id of the trial fmin is evaluating now (one at a time in this process)."""
        if self.trials is None:
            return None
        running = [t["tid"] for t in self.trials._dynamic_trials if t["state"] == JOB_STATE_RUNNING]
        return running[-1] if running else None

    def _task(self, number: int, base: TrainConfig | None = None) -> TrialTask:
        s = self.search
        keep = peer_statuses(s.pruner)
        return TrialTask(base or self.base, (s.pruner, s.min_epochs, s.reduction_factor, s.prune_startup_trials),
                         self.experiment_id, self.parent_id, number,
                         [r.history for r in self.records if r.status in keep], self.deadline)

    def _algo(self) -> Callable[..., list]:
        """hyperopt's ``algo``: the stop rules (checked before each new trial, on the whole history of a resumed
        search too), then one suggestion per new trial id, seeded by :func:`trial_seed`."""
        s = self.search
        suggest = (partial(tpe.suggest, n_startup_jobs=s.n_startup_jobs, gamma=s.gamma) if s.strategy == "tpe"
                   else rand.suggest)
        self.failed_streak = ""

        def algo(new_ids: list, domain: Any, trials: Any, seed: int) -> list:
            done = [r for r in trials.results if r.get("status") in (STATUS_OK, STATUS_FAIL)]
            self.failed_streak = self._failure_streak(done)
            self.stop_reason = self.failed_streak or self._stop_rule(done)
            if self.stop_reason:
                return []  # fmin ends cleanly after the trials in flight
            return [doc for tid in new_ids for doc in suggest([tid], domain, trials, trial_seed(self.base.seed, tid))]

        return algo

    def _queue_presets(self, trials: Trials) -> None:
        # queued trials count toward max_evals, and fmin evaluates them only when it has one of its own to add;
        # presets run first, so a resume among them caps the rest as the first run did
        for vals in self._preset_points()[: max(0, self.search.max_evals - len(self.records) - 1)]:
            self._queue_point(trials, vals)

    def run_trial(self, point: dict[str, Any], number: int | None = None) -> TrialRecord:
        number = self._next_number() if number is None else number
        record, setup = run_trial_safely(self._task(number), point, self.dataset, self.calls.submit)
        if record.status == "ok" and (self.best_state is None or record.loss < self.best_state["loss"]):
            self.best_state = {"loss": record.loss, "number": record.number, "setup": setup,
                               "state": copy.deepcopy(setup.trainer.model.state_dict())}
        self.records.append(record)
        self._log_progress([record])
        return record

    def _log_progress(self, new: list[TrialRecord], force: bool = False) -> None:
        """The parent's ``best_val_loss`` (step = trial number), sent in batches every few seconds."""
        for record in new:
            ok = [r.loss for r in self.records if r.status == "ok" and r.loss is not None and r.number <= record.number]
            if ok:
                self.progress.append(Metric("best_val_loss", min(ok), int(time.time() * 1000), record.number))
        if self.progress and (force or time.monotonic() - self.progress_sent >= PROGRESS_FLUSH_SECS):
            self.calls.submit(self.client.log_batch, self.parent_id, metrics=self.progress)
            self.progress, self.progress_sent = [], time.monotonic()

    # ------------------------------------------------------------------------------------- main
    def run(self) -> SearchOutcome:
        self.prepare()
        # MLflow logs a traceback per database error and hyperopt a line per exception in the objective: a
        # failure is reported once, below, in one line
        quiet = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "hyperopt.fmin")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.CRITICAL)
        try:
            return self._run()
        except Exception as exc:
            if isinstance(exc, (SearchFailed, UsageError)) or not tracking.is_store_error(exc):
                raise
            raise SearchFailed(self._store_failure(exc)) from None
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)

    def _store_failure(self, exc: BaseException) -> str:
        where = f"the tracking store {mlflow.get_tracking_uri()}"
        if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and self.artifact_uri:
            where = f"the artifact store {self.artifact_uri}"
        message = f"{where} failed: {tracking.store_error_text(exc)}"
        parent = self.parent_id or self.search.resume
        if not parent:
            return message + "; nothing was written: run the search again once the store works"
        return (f"{message}; search run {parent} keeps the trials whose results reached the store (runs "
                f"that could not be marked stay RUNNING until the resume ends them); once the store works, continue "
                f"with: hyperflow search resume={parent}")

    artifact_uri = ""

    def _run(self) -> SearchOutcome:
        fresh = self.resumed is None
        with tracking.tracked_run("search", experiment=self.base.experiment, run_id=self.search.resume,
                                  run_name=tracking.unique_run_name("search", self.dataset.name) if fresh else None,
                                  tags=tracking.run_tags(self.dataset)) as parent:
            self.parent_id, self.experiment_id = parent.info.run_id, parent.info.experiment_id
            self.artifact_uri = parent.info.artifact_uri
            self._record_settings(fresh)
            if not fresh:
                self.records = self._read_children()
            self._lr_bounds()
            s = self.search
            if s.timeout:
                self.deadline = time.time() + s.timeout
            try:
                if s.strategy == "grid":
                    self._run_grid()
                elif s.backend == "spark":
                    self._run_spark()
                else:
                    self._run_hyperopt()
                self.stop_reason = self.stop_reason or "budget"
            except SearchStopped as exc:
                self.stop_reason = str(exc)
            finally:
                try:
                    self._log_progress([], force=True)
                finally:
                    self.calls.close()  # every trial's results and end are in MLflow before the search goes on
            mlflow.set_tag("hyperflow.stop_reason", self.stop_reason)
            outcome = self._finish()
        return outcome

    def _record_settings(self, fresh: bool) -> None:
        """A new search logs every setting as a param (MLflow keeps params as first written). The settings a
        resume may change live in tag ``hyperflow.settings`` (their current values), and each change is kept
        as param ``resume.<n>.<key>``, so that any number of resumes can change them."""
        s = self.search
        settings = {**{k: str(getattr(s, k)) for k in RESUMABLE_SEARCH},
                    **{k: str(getattr(self.base, k)) for k in RESUMABLE_TRAIN}}
        tags = {SETTINGS_TAG: json.dumps(settings)}
        if len(self.space_text) <= 7000:
            tags[SPACE_TAG] = self.space_text
        if fresh:
            tracking.log_params(self.parent_id, {**{k: str(v) for k, v in vars(s).items() if k != "resume"},
                                                 **self.base.to_params()})
            mlflow.set_tags(tags)
            if self.space_path is not None:
                mlflow.log_artifact(str(self.space_path), "space")
            tracking.log_dataset(self.dataset)
            return
        n = int(self.resumed.data.tags.get(RESUMES_TAG, "0")) + 1
        mlflow.set_tags({**tags, RESUMES_TAG: str(n)})  # first: a resume cut short never leaves n to the next
        params = {f"resume.{n}.{k}": v for k, v in self.changed.items()}
        if self.space_edited:
            params[f"resume.{n}.space"] = str(self.space_path)
            mlflow.log_text(self.space_text, f"space/resume-{n}/space.yaml")
        if params:
            tracking.log_params(self.parent_id, params, fresh_run=True)

    def _lr_bounds(self) -> None:
        if self.search.lr_bounds != "auto" or "lr" not in self.space:
            return
        params = self.client.get_run(self.parent_id).data.params
        if "lr_bounds.low" in params:  # a resumed search keeps the bounds it found
            low, high = float(params["lr_bounds.low"]), float(params["lr_bounds.high"])
        else:
            point = complete_point(self.space, {})
            point.pop("lr", None)
            finder = lr_find_in_run(setup_training(self._config({**point, "lr": 1e-3}), dataset=self.dataset),
                                    parent_run_id=self.parent_id).finder
            low, high = finder.lr_range_
            if self.base.schedule == "onecycle":
                high *= 3  # the one-cycle peak may sit closer to the cliff: it is held only briefly
            tracking.log_params(self.parent_id, {"lr_bounds.low": str(low), "lr_bounds.high": str(high)})
        self.space = {**self.space, "lr": {"type": "loguniform", "low": low, "high": high}}

    def _run_grid(self) -> None:
        done = [r.params for r in self.records]
        points = grid_points(self.space)
        todo = [p for p in points if p not in done][: max(0, self.search.max_evals - len(self.records))]
        for point in todo:
            done_results = [{"status": STATUS_FAIL if r.status == "failed" else STATUS_OK, "loss": r.loss,
                             "failure": r.reason} for r in self.records]
            reason = self._failure_streak(done_results) or self._stop_rule(done_results)
            if reason:
                self.stop_reason = reason
                return
            self.run_trial(point)

    def _preset_points(self) -> list[dict[str, list]]:
        """The literature presets that fit the space, as hyperopt ``vals`` (label -> [value] or [] when
        a conditional leaves it out). A resumed search queues those it has not run yet while its history
        holds presets only (it was interrupted among them), as the uninterrupted search would have run them."""
        if not self.search.seed_presets:
            return []
        points, middle = [], complete_point(self.space, {})
        for preset in PRESETS.values():
            point = complete_point(self.space, preset)  # nested keys too (sgd's momentum under optimizer)
            if point is not None and point != middle and point not in points:
                points.append(point)
        presets = [to_vals(self.space, point) for point in points]
        if not self.records:
            return presets
        inside = self._in_space()
        done = [to_vals(self.space, r.params) for r in inside]
        if len(inside) < len(self.records) or any(vals not in presets for vals in done):
            return []  # past the presets (or an edited space): the suggestions go on
        return [vals for vals in presets if vals not in done]

    def _run_hyperopt(self) -> None:
        s = self.search
        trials = self._fill_trials(Trials())
        outside = len(self.records) - len(trials.trials)  # kept in MLflow, not shown to hyperopt
        self._queue_presets(trials)
        self.trials = trials
        try:
            fmin(self._objective, to_hyperopt(self.space), algo=self._algo(), max_evals=s.max_evals - outside,
                 trials=trials, rstate=np.random.default_rng(self.base.seed), show_progressbar=True, verbose=False,
                 return_argmin=False)
        except AllTrialsFailed:  # hyperopt's way to say no trial finished; the records say why
            pass
        finally:
            self.trials = None
        if self.failed_streak:
            raise SearchStopped(self.failed_streak)

    def _failure_streak(self, done: list[dict[str, Any]]) -> str:
        failures = 0
        for r in reversed(done):
            if r["status"] != STATUS_FAIL:
                break
            failures += 1
        if failures < self.search.max_consecutive_failures:
            return ""
        return (f"{failures} trials failed in a row (last: {done[-1].get('failure', '')}); check the space "
                f"(e.g. lower the lr bounds) or raise max_consecutive_failures")

    def _stop_rule(self, done: list[dict[str, Any]]) -> str:
        """Why the search should stop now ('' = go on), from the finished results in trial order."""
        s = self.search
        losses = [r["loss"] for r in done if r.get("status") == STATUS_OK and r.get("loss") is not None]
        if s.loss_threshold is not None and losses and min(losses) <= s.loss_threshold:
            return "loss_threshold"
        if s.early_stop and losses:
            best_at = max(i for i, r in enumerate(done) if r.get("status") == STATUS_OK and r.get("loss") == min(losses))
            if len(done) - 1 - best_at >= s.early_stop:
                return f"early_stop: {s.early_stop} trials without improvement"
        if self.deadline is not None and time.time() >= self.deadline:
            return "timeout"
        return ""

    def _run_spark(self) -> None:
        """Trials as Spark tasks through hyperopt's SparkTrials; the records are then read back from MLflow.
        Stop rules live in the suggestion step: an algorithm that returns no trial ends ``fmin`` cleanly
        after the trials in flight (hyperopt's protocol), where ``early_stop_fn`` would hang SparkTrials."""
        from hyperopt import SparkTrials

        from hyperflow.search import spark

        s = self.search
        session = spark.session_for(s.spark_master, s.parallelism, self.spark_session)
        threads = spark.threads_per_trial(session, s.parallelism)
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.time()) + 60  # grace: trials stop themselves
        trials = self._fill_trials(SparkTrials(parallelism=s.parallelism, timeout=remaining, spark_session=session))
        outside = len(self.records) - len(trials.trials)
        self._queue_presets(trials)
        objective = spark.SparkObjective(self._task(0, self.base.replace(threads=threads)), self._next_number(),
                                         trials)
        try:
            fmin(objective, to_hyperopt(self.space), algo=self._algo(), max_evals=s.max_evals - outside,
                 trials=trials, rstate=np.random.default_rng(self.base.seed), show_progressbar=self.base.progress,
                 verbose=False, return_argmin=False)
        except AllTrialsFailed:  # no trial finished: the records read back below say why
            pass
        except KeyboardInterrupt:
            if self.spark_session is None:
                session.sparkContext.cancelAllJobs()
            raise
        finally:  # from MLflow, the source of truth; children still RUNNING (cancelled) end KILLED
            known = {r.run_id for r in self.records}
            self.records = self._read_children()
            self._log_progress([r for r in self.records if r.run_id not in known])
        if trials.fmin_cancelled_reason == "fmin run timeout" and not self.stop_reason:
            self.stop_reason = "timeout"
        if self.failed_streak:
            raise SearchStopped(self.failed_streak)

    @staticmethod
    def _trial_doc(trials: Trials, tid: int, vals: dict[str, list], result: dict[str, Any]) -> dict[str, Any]:
        misc = {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                "idxs": {k: [tid] if v else [] for k, v in vals.items()}, "vals": vals}
        return trials.new_trial_docs([tid], [None], [result], [misc])[0]

    def _queue_point(self, trials: Trials, vals: dict[str, list]) -> None:
        """Queue a point as a new trial (fmin ignores ``points_to_evaluate`` once given ``trials``)."""
        trials.insert_trial_docs([self._trial_doc(trials, trials.new_trial_ids(1)[0], vals, {"status": "new"})])
        trials.refresh()

    # ------------------------------------------------------------------------------------- the end
    def _finish(self) -> SearchOutcome:
        ok = [r for r in self.records if r.status == "ok" and r.loss is not None]
        best = min(ok, key=lambda r: (r.loss, r.number)) if ok else None
        outcome = SearchOutcome(self.parent_id, self.experiment_id, self.records, best, self.stop_reason)
        self._log_table()
        if best is None:
            return outcome
        mlflow.set_tag("hyperflow.best_run_id", best.run_id)
        mlflow.set_tags({f"hyperflow.best.{k}": str(v) for k, v in best.params.items()})
        mlflow.log_dict({"trial": best.number, "run_id": best.run_id, "val_loss": best.loss,
                         "params": best.params}, "best_params.json")
        name = (self.search.model_name or self.dataset.default_model_name) if self.search.register else None
        try:
            self._log_best_model(best, name, outcome)
        except Exception as exc:  # the trials are done and stay as they finished; the model can be logged later
            what = "logging the best model" if outcome.model_uri is None else f"registering it as '{name}'"
            try:
                mlflow.set_tag(MODEL_STATUS_TAG, f"failed: {tracking.one_line(exc)}")
            except Exception:
                pass
            raise SearchFailed(
                f"the search's {len(self.records)} trials are done (best: trial {best.number}, run {best.run_id}, "
                f"val_loss {best.loss:.4g}) but {what} failed: {tracking.one_line(exc)}; the trials stay as they "
                f"finished. Once that is fixed, log the model without running the trials again: "
                f"hyperflow search resume={self.parent_id}") from None
        mlflow.set_tag(MODEL_STATUS_TAG, "logged" if name is None else f"registered {name}/{outcome.registered[1]}")
        return outcome

    def _log_best_model(self, best: TrialRecord, name: str | None, outcome: SearchOutcome) -> None:
        """Log the best trial's model into its run (once: a resume finds the model a cut-short search logged)
        and register it (once per trial run: a resume never registers it again nor moves ``challenger``
        again once the version carries its tags)."""
        parent_metrics = self.client.get_run(self.parent_id).data.metrics
        test = {k[len("best_"):]: v for k, v in parent_metrics.items() if k.startswith("best_test_")}
        model = tracking.finished_model(best.run_id)
        if model is None or not test:
            setup = self._best_setup(best)
            d = setup.dataset
            test = setup.trainer.evaluate(d.X_test, d.y_test, prefix="test_")
            mlflow.log_metrics({f"best_{k}": v for k, v in test.items()})
            stamp = int(time.time() * 1000)
            self.client.log_batch(best.run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in test.items()])
            if model is None:
                with tracking.reopened_run(best.run_id):
                    model = tracking.log_model(setup.trainer.model, setup.model_spec, d, None, setup.user_code)
        outcome.test_metrics = test
        outcome.model_uri = model.model_uri
        if name is None:
            return
        version, created = tracking.register_once(model.model_uri, name, best.run_id)
        if created or "search_run_id" not in version.tags:  # the tags come last: without them it was cut short
            tracking.tag_challenger(name, str(version.version), {"trial_run_id": best.run_id,
                                                                 "val_loss": str(best.loss),
                                                                 "search_run_id": self.parent_id})
        outcome.registered = (name, str(version.version))

    def _best_setup(self, best: TrialRecord) -> Setup:
        """The best trial's trained model: kept in memory when it ran in this session, else trained again
        from its settings (seeded, so the same model); with ``refit``, trained on train+val."""
        config = self._config(best.params)
        dataset = self.dataset
        if self.search.refit:
            dataset = copy.copy(dataset)
            dataset.X_train = torch.cat([dataset.X_train, dataset.X_val])
            dataset.y_train = torch.cat([dataset.y_train, dataset.y_val])
            config = config.replace(restore_best=False, patience=0)
        elif self.best_state is not None and self.best_state["number"] == best.number:
            setup = self.best_state["setup"]
            setup.trainer.model.load_state_dict(self.best_state["state"])
            return setup
        setup = setup_training(config, dataset=dataset)
        setup.trainer.fit(dataset.X_train, dataset.y_train, self.dataset.X_val, self.dataset.y_val)
        return setup

    def _log_table(self) -> None:
        rows = [{"trial": r.number, "status": r.status, "best_val_loss": r.loss, "epochs": r.epochs,
                 "run_id": r.run_id, "reason": r.reason, **r.params} for r in self.records]
        table = pd.DataFrame(rows)
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp, "trials.csv"), index=False)
            mlflow.log_artifact(str(Path(tmp, "trials.csv")))
        if not rows:
            return
        tracking.log_figure(search_progress([r.number for r in self.records], [r.loss for r in self.records],
                                            [r.status for r in self.records]), "plots/search_progress.png")
        ok = table[table["status"] == "ok"]
        params = [c for c in ok.columns if c in {k for r in self.records for k in r.params}]
        scores = parameter_importance(ok[params], ok["best_val_loss"].astype(float), self.base.seed) if len(ok) else None
        if scores is not None:
            tracking.log_figure(importance_plot(scores["parameter"].tolist(), scores["importance"].tolist(),
                                                scores["std"].tolist()), "plots/parameter_importance.png")
            mlflow.log_text(scores.to_csv(index=False), "parameter_importance.csv")


def _recorded_mapping(params: dict[str, str], name: str) -> dict[str, str] | None:
    """A mapping setting as ``to_params`` flattened it (``name.key``), resolved values winning; None if absent."""
    found = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(f"{name}.")}
    found.update({k[len(name) + 10:]: v for k, v in params.items() if k.startswith(f"resolved.{name}.")})
    return found or None


def _kept_setting(run_id: str | None, key: str, recorded: Any, given: Any) -> str:
    return (f"resume={run_id}: {key} was {recorded} in that search, not {given}: a resumed search keeps the "
            f"settings that define its trials (a resume may change only {', '.join(RESUMABLE_SEARCH)}); leave "
            f"{key} out to continue with {recorded}, or start a new search")
