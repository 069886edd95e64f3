"""The ``search`` workflow: one parent run, one child run per trial, hyperopt choosing the points.

Trials run in this process (no subprocess per trial) or, with ``backend=spark``, on Spark executors through
hyperopt's SparkTrials; each in a child run linked by an explicit ``parent_run_id`` (MLflow's active run
is thread-local). MLflow is the source of truth: ``resume`` rebuilds hyperopt's history from the finished
children, so a kill loses at most the trials in flight.
"""

from __future__ import annotations

import copy
import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import torch
from hyperopt import STATUS_FAIL, STATUS_OK, JOB_STATE_DONE, Trials, fmin, rand, tpe
from hyperopt.early_stop import no_progress_loss
from hyperopt.exceptions import AllTrialsFailed
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hyperflow import tracking
from hyperflow.config import PRESETS, TrainConfig
from hyperflow.errors import UsageError
from hyperflow.plots import importance as importance_plot
from hyperflow.plots import search_progress
from hyperflow.search.importance import parameter_importance
from hyperflow.search.pruning import PruningCallback, make_pruner, peer_statuses
from hyperflow.search.settings import SearchConfig
from hyperflow.search.space import (complete_point, default_space_path, flatten, grid_points, iter_grid,
                                    load_space, to_hyperopt, to_vals)
from hyperflow.data import Dataset
from hyperflow.training import Setup, load_data, setup_training
from hyperflow.workflows.lr_find import lr_find_in_run

STATUS_TAG = "hyperflow.trial_status"
NUMBER_TAG = "hyperflow.trial_number"
HISTORY_TAG = "hyperflow.val_loss_history"  # per-epoch val_loss as JSON: pruning and resume read it in one call
PROGRESS_FLUSH_SECS = 5.0  # the parent's best_val_loss curve is sent in batches this often
TRIAL_FLUSH_SECS = 5.0  # a trial's per-epoch metrics too (at least): most trials then log in one call at the end


class SearchStopped(RuntimeError):
    """Raised from the objective to end the search early (too many failures in a row)."""


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
    number, config = task.number, task.base.replace(**point)
    pruning = PruningCallback(make_pruner(*task.pruner), task.history, task.deadline)
    tags = {NUMBER_TAG: str(number), "hyperflow.trial_params": json.dumps(point, default=str),
            "hyperflow.search_run_id": task.parent_id}
    record = TrialRecord(number, "", point, "failed", None, 0)
    setup = None
    with tracking.child_run("trial", task.experiment_id, task.parent_id, f"trial-{number:03d}", tags,
                            send) as run_id:
        record.run_id = run_id
        # params ride with the first metrics call, the last epochs' metrics with the results: 3 calls a trial
        params = {**{k: str(v) for k, v in point.items()}, "trial_number": str(number), "seed": str(config.seed)}
        metrics = tracking.MlflowMetrics(run_id, max(config.flush_secs, TRIAL_FLUSH_SECS), flush_at_end=False,
                                         params=params)
        final: dict[str, float] = {}
        try:
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
        send(tracking.log_results, run_id, final if record.status != "failed" else {},
             {STATUS_TAG: record.status, "hyperflow.trial_reason": record.reason,
              **({HISTORY_TAG: history} if len(history) <= 5000 else {})},
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

    def __init__(self, search: SearchConfig, base: TrainConfig, spark_session: Any = None) -> None:
        self.search, self.spark_session = search, spark_session
        self.base = base.replace(log_model=False, model_name=None, progress=False, tensorboard=False)
        self.client = MlflowClient()
        self.records: list[TrialRecord] = []
        self.best_state: dict[str, Any] | None = None
        self.parent_id = ""
        self.deadline: float | None = None  # wall clock
        self.stop_reason = ""
        self.progress: list[Metric] = []
        self.progress_sent = time.monotonic()
        self.calls = tracking.BackgroundCalls()

    # ------------------------------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any run is written."""
        if self.search.backend == "spark":
            from hyperflow.search import spark

            spark.check_available(self.spark_session)
        self.dataset = load_data(self.base)
        path = self.search.space or default_space_path(self.dataset.task)
        self.space_path = Path(path)
        self.space = load_space(path)
        points = list(itertools.islice(iter_grid(self.space), 50))
        for point in points:  # the space's values must make valid configs
            self._config(point)
        setup_training(self._config(points[0]), dataset=self.dataset)
        if self.search.resume:
            try:
                run = self.client.get_run(self.search.resume)
            except Exception:
                raise UsageError(f"resume={self.search.resume}: no such run in {mlflow.get_tracking_uri()}") from None
            if run.data.tags.get(tracking.ROLE_TAG) != "search":
                raise UsageError(f"resume={self.search.resume} is not a search run (its role is "
                                 f"{run.data.tags.get(tracking.ROLE_TAG)!r}): pass the id of the parent search run")

    def _config(self, point: dict[str, Any]) -> TrainConfig:
        try:
            return self.base.replace(**point)
        except UsageError as exc:
            raise UsageError(f"search space gives an invalid combination {point}: {exc}") from None

    # ------------------------------------------------------------------------------------- resume
    def _read_children(self) -> list[TrialRecord]:
        """The finished trials of this search, from MLflow; orphaned RUNNING children end as KILLED."""
        children = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}' and tags.`hyperflow.role` = 'trial'",
            max_results=5000)
        records = []
        for run in children:
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
                continue
            tags, status = run.data.tags, run.data.tags.get(STATUS_TAG)
            if status not in ("ok", "failed", "pruned"):
                continue
            loss = run.data.metrics.get("best_val_loss")
            if HISTORY_TAG in tags:
                history = [float(v) for v in json.loads(tags[HISTORY_TAG])]
            else:  # written before the tag existed, or too long for a tag
                history = [m.value for m in sorted(self.client.get_metric_history(run.info.run_id, "val_loss"),
                                                   key=lambda m: m.step)]
            records.append(TrialRecord(int(tags[NUMBER_TAG]), run.info.run_id,
                                       json.loads(tags.get("hyperflow.trial_params", "{}")), status,
                                       loss if status != "failed" else None, len(history), history,
                                       tags.get("hyperflow.trial_reason", "")))
        return sorted(records, key=lambda r: r.number)

    def _fill_trials(self, trials: Trials) -> Trials:
        """hyperopt's history from ``self.records``, as if those trials had just run."""
        docs = []
        for tid, record in enumerate(self.records):
            result = ({"status": STATUS_OK, "loss": record.loss} if record.loss is not None
                      else {"status": STATUS_FAIL, "failure": record.reason})
            docs.append(self._trial_doc(trials, tid, to_vals(self.space, record.params), result))
        for doc in docs:
            doc["state"] = JOB_STATE_DONE
        if docs:
            trials.insert_trial_docs(docs)
            trials.refresh()
        return trials

    # ------------------------------------------------------------------------------------- trials
    def _objective(self, sample: dict[str, Any]) -> dict[str, Any]:
        point = flatten(sample)
        record = self.run_trial(point)
        self._check_stop(record)
        if record.status == "failed":
            return {"status": STATUS_FAIL, "failure": record.reason}
        # a pruned trial reports the best val_loss it reached: a pessimistic but real observation,
        # so TPE counts it among the bad points instead of ignoring it (as it would a failure)
        return {"status": STATUS_OK, "loss": record.loss}

    def _task(self, number: int, base: TrainConfig | None = None) -> TrialTask:
        s = self.search
        keep = peer_statuses(s.pruner)
        return TrialTask(base or self.base, (s.pruner, s.min_epochs, s.reduction_factor, s.prune_startup_trials),
                         self.experiment_id, self.parent_id, number,
                         [r.history for r in self.records if r.status in keep], self.deadline)

    def _suggest(self) -> Any:
        s = self.search
        return (partial(tpe.suggest, n_startup_jobs=s.n_startup_jobs, gamma=s.gamma) if s.strategy == "tpe"
                else rand.suggest)

    def _queue_presets(self, trials: Trials) -> None:
        # queued trials count toward max_evals, and fmin evaluates them only when it has one of its own to add
        for vals in self._preset_points()[: max(0, self.search.max_evals - len(trials.trials) - 1)]:
            self._queue_point(trials, vals)

    def _next_number(self) -> int:
        return max((r.number for r in self.records), default=-1) + 1

    def run_trial(self, point: dict[str, Any]) -> TrialRecord:
        self._config(point)  # an invalid combination is bad input: it stops the search with a clear error
        record, setup = run_trial_safely(self._task(self._next_number()), point, self.dataset, self.calls.submit)
        if record.status == "ok" and (self.best_state is None or record.loss < self.best_state["loss"]):
            self.best_state = {"loss": record.loss, "number": record.number, "setup": setup,
                               "state": copy.deepcopy(setup.trainer.model.state_dict())}
        self.records.append(record)
        self._log_progress([record])
        return record

    def _check_stop(self, record: TrialRecord) -> None:
        failures = 0
        for r in reversed(self.records):
            if r.status != "failed":
                break
            failures += 1
        if failures >= self.search.max_consecutive_failures:
            raise SearchStopped(f"{failures} trials failed in a row (last: {record.reason}); check the space "
                                f"(e.g. lower the lr bounds) or raise max_consecutive_failures")

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
        tags = tracking.run_tags(self.dataset)
        with tracking.tracked_run("search", experiment=self.base.experiment, run_id=self.search.resume,
                                  run_name=None if self.search.resume else f"search-{self.dataset.name}",
                                  tags=tags) as parent:
            self.parent_id, self.experiment_id = parent.info.run_id, parent.info.experiment_id
            if self.search.resume:
                self.records = self._read_children()
            s = self.search
            tracking.log_params(self.parent_id, {**{k: str(v) for k, v in vars(s).items() if k != "resume"},
                                                 **self.base.to_params()})
            mlflow.log_artifact(str(self.space_path), "space")
            self._lr_bounds()
            if s.timeout:
                self.deadline = time.time() + s.timeout
            try:
                if s.strategy == "grid":
                    self._run_grid()
                elif s.backend == "spark":
                    self._run_spark()
                else:
                    self._run_hyperopt(self._fill_trials(Trials()))
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

    def _lr_bounds(self) -> None:
        if self.search.lr_bounds != "auto" or "lr" not in self.space:
            return
        params = self.client.get_run(self.parent_id).data.params
        if "lr_bounds.low" in params:  # a resumed search keeps the bounds it found
            low, high = float(params["lr_bounds.low"]), float(params["lr_bounds.high"])
        else:
            point = next(iter_grid(self.space))
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
            if self.deadline is not None and time.time() >= self.deadline:
                self.stop_reason = "timeout"
                return
            record = self.run_trial(point)
            self._check_stop(record)
            if self.search.loss_threshold is not None and record.loss is not None \
                    and record.loss <= self.search.loss_threshold:
                self.stop_reason = "loss_threshold"
                return

    def _preset_points(self) -> list[dict[str, list]]:
        """The literature presets that fit the space, as hyperopt ``vals`` (label -> [value] or [] when
        a conditional leaves it out); only for a new search."""
        if not self.search.seed_presets or self.records:
            return []
        points, middle = [], complete_point(self.space, {})
        for preset in PRESETS.values():
            point = complete_point(self.space, preset)  # nested keys too (sgd's momentum under optimizer)
            if point is not None and point != middle and point not in points:
                points.append(point)
        return [to_vals(self.space, point) for point in points]

    def _run_hyperopt(self, trials: Trials) -> None:
        s = self.search
        algo = self._suggest()
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.time())
        before = len(trials.trials)
        self._queue_presets(trials)
        try:
            fmin(self._objective, to_hyperopt(self.space), algo=algo, max_evals=s.max_evals, trials=trials,
                 rstate=np.random.default_rng(self.base.seed), timeout=remaining, loss_threshold=s.loss_threshold,
                 early_stop_fn=no_progress_loss(s.early_stop) if s.early_stop else None,
                 show_progressbar=True, verbose=False, return_argmin=False)
        except AllTrialsFailed:  # hyperopt's way to say no trial finished; the records say why
            pass
        ran = len(trials.trials) - before
        if len(trials.trials) < s.max_evals:
            if self.deadline is not None and time.time() >= self.deadline:
                self.stop_reason = "timeout"
            elif s.loss_threshold is not None and any(r.loss is not None and r.loss <= s.loss_threshold
                                                      for r in self.records):
                self.stop_reason = "loss_threshold"
            elif s.early_stop and ran:
                self.stop_reason = f"early_stop: {s.early_stop} trials without improvement"

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
        """Why the search should stop now ('' = go on), from hyperopt's finished results in trial order."""
        s = self.search
        losses = [r["loss"] for r in done if r.get("status") == STATUS_OK]
        if s.loss_threshold is not None and losses and min(losses) <= s.loss_threshold:
            return "loss_threshold"
        if s.early_stop and losses:
            best_at = max(i for i, r in enumerate(done) if r.get("status") == STATUS_OK and r["loss"] == min(losses))
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
        self._queue_presets(trials)
        objective = spark.SparkObjective(self._task(0, self.base.replace(threads=threads)), self._next_number(),
                                         trials)
        suggest = self._suggest()

        failed = ""

        def algo(new_ids: list, domain: Any, trials_: Any, seed: int) -> list:
            nonlocal failed
            done = [r for r in trials_.results if r.get("status") in (STATUS_OK, STATUS_FAIL)]
            failed = self._failure_streak(done)
            self.stop_reason = failed or self._stop_rule(done)
            return [] if self.stop_reason else suggest(new_ids, domain, trials_, seed)

        try:
            fmin(objective, to_hyperopt(self.space), algo=algo, max_evals=s.max_evals, trials=trials,
                 rstate=np.random.default_rng(self.base.seed), show_progressbar=self.base.progress, verbose=False,
                 return_argmin=False)
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
        if failed:
            raise SearchStopped(failed)

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
        best = min(ok, key=lambda r: r.loss) if ok else None
        outcome = SearchOutcome(self.parent_id, self.experiment_id, self.records, best, self.stop_reason)
        self._log_table()
        if best is None:
            return outcome
        mlflow.set_tag("hyperflow.best_run_id", best.run_id)
        mlflow.set_tags({f"hyperflow.best.{k}": str(v) for k, v in best.params.items()})
        mlflow.log_dict({"trial": best.number, "run_id": best.run_id, "val_loss": best.loss,
                         "params": best.params}, "best_params.json")
        setup = self._best_setup(best)
        d = setup.dataset
        outcome.test_metrics = setup.trainer.evaluate(d.X_test, d.y_test, prefix="test_")
        mlflow.log_metrics({f"best_{k}": v for k, v in outcome.test_metrics.items()})
        with tracking.tracked_run("trial", run_id=best.run_id):
            mlflow.log_metrics(outcome.test_metrics)
            name = None
            if self.search.register:
                name = self.search.model_name or f"hyperflow-{self.dataset.name}"
            info = tracking.log_model(setup.trainer.model, setup.model_spec, d, name, setup.user_code)
        outcome.model_uri = info.model_uri
        if name and info.registered_model_version is not None:
            version = str(info.registered_model_version)
            tracking.tag_challenger(name, version, {"search_run_id": self.parent_id, "trial_run_id": best.run_id,
                                                    "val_loss": str(best.loss)})
            outcome.registered = (name, version)
        return outcome

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


def search(search_config: SearchConfig, base: TrainConfig) -> SearchOutcome:
    """Run (or resume) a search; bad input raises UsageError before any run is written."""
    return SearchRunner(search_config, base).run()
