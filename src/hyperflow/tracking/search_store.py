"""The search's MLflow calls beyond the general run API of ``hyperflow.tracking``, made by the search workflow
(``hyperflow.workflows.search`` and its modules; the engine, ``hyperflow.search``, makes none).

What it does: read a search run and its trials back (the source of truth for resume), write the search run's
settings, progress curve, stop reason, best trial and artifacts, record the best trial's test metrics, and
hand a worker or a Spark executor what it needs to log. The LR range test for ``lr_bounds=auto`` is the lr_find
workflow's run. Trial runs themselves open and close through ``tracking.child_run`` / ``tracking.log_results``.

Writes to the search run go to the active run (the search opens it with ``tracking.tracked_run`` in the
calling thread); everything else names its run explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names, tracking
from hyperflow.core.data import Dataset
from hyperflow.errors import without_credentials
from hyperflow.tracking import new_store
from hyperflow.tracking.runs import duplicate_reason, end_orphan, twins

PROGRESS_FLUSH_SECS = 5.0  # the parent's best_val_loss curve is sent in batches this often
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class UnreadableRun(Exception):
    """A run could not be read for another reason than its absence; ``cause`` is MLflow's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@contextmanager
def quiet_logs(*others: str) -> Iterator[None]:
    """MLflow's traceback per database error (and the loggers named) silenced for the duration: the search
    reports a store failure once, in one line."""
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", *others)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def read_run(run_id: str) -> Any | None:
    """The run, or None when the store has no such run; any other failure raises :class:`UnreadableRun`."""
    path = new_store.sqlite_path(mlflow.get_tracking_uri())
    if path is not None and not path.exists():  # no store yet, so no run: none is made for a typo
        return None
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise UnreadableRun(exc) from exc


def run_params(run_id: str) -> dict[str, str]:
    return MlflowClient().get_run(run_id).data.params


def read_trials(experiment_id: str, parent_id: str) -> tuple[list[dict[str, Any]], int]:
    """The trials of a search whose results reached MLflow, as dicts with the fields of a trial record
    (number, run_id, params, status, loss, epochs, history, reason) in trial order, and the highest trial
    number of every trial run (those killed included). Whatever became of a trial's closing call (a kill -9
    between its results and the end of its run, or while the best model was logged), it ends as it
    finished; children left RUNNING without results end KILLED (tagged ``hyperflow.orphaned``: a trial its
    search stopped, or a twin from a request sent twice) and count as no trial. A number run again after an
    older resume keeps its latest run that ended as it should."""
    client = MlflowClient()
    children = client.search_runs(
        [experiment_id],
        f"tags.{names.PARENT_RUN_ID} = '{parent_id}' and tags.`{names.ROLE}` = '{names.ROLE_TRIAL}'",
        max_results=50000,
    )
    highest, candidates = -1, []
    for run in children:
        tags = run.data.tags
        if names.TRIAL_NUMBER in tags:
            highest = max(highest, int(tags[names.TRIAL_NUMBER]))
        if tags.get(names.TRIAL_STATUS) not in names.TRIAL_STATUSES:
            if run.info.status == "RUNNING":
                _end_orphan(run, children, "its search stopped before this trial had results", client)
            continue
        candidates.append(run)
    candidates.sort(key=lambda r: (r.info.status not in ("FINISHED", "FAILED"), -(r.info.start_time or 0)))
    records, numbers = [], set()
    for run in candidates:
        tags, status = run.data.tags, run.data.tags[names.TRIAL_STATUS]
        number = int(tags[names.TRIAL_NUMBER])
        if number in numbers:
            continue
        numbers.add(number)
        ended = "FAILED" if status == names.TRIAL_FAILED else "FINISHED"
        if run.info.status != ended:
            tracking.end_run_quietly(run.info.run_id, ended)
        loss = run.data.metrics.get(names.BEST_VAL_LOSS)
        if names.VAL_LOSS_HISTORY in tags:
            history = [float(v) for v in json.loads(tags[names.VAL_LOSS_HISTORY])]
        else:  # written before the tag existed, or too long for a tag
            history = [
                m.value
                for m in sorted(client.get_metric_history(run.info.run_id, names.VAL_LOSS), key=lambda m: m.step)
            ]
        records.append(
            {
                "number": number,
                "run_id": run.info.run_id,
                "params": json.loads(tags.get(names.TRIAL_PARAMS, "{}")),
                "status": status,
                "loss": loss if status != names.TRIAL_FAILED else None,
                "epochs": len(history),
                "history": history,
                "reason": tags.get(names.TRIAL_REASON, ""),
            }
        )
    return sorted(records, key=lambda r: r["number"]), highest


def trial_end_tags(number: int, status: str, reason: str, history: list[float] | None = None) -> dict[str, str]:
    """The tags that close a trial's run: its status and reason, its val_loss curve (read back by pruning and
    resume; left out when too long for a tag), and for a pruned or failed trial a run name that says so (the
    runs table shows names by default)."""
    tags = {names.TRIAL_STATUS: status, names.TRIAL_REASON: without_credentials(reason)}
    if history is not None:
        curve = json.dumps([float(f"{v:.6g}") for v in history])
        if len(curve) <= 5000:
            tags[names.VAL_LOSS_HISTORY] = curve
    if status != names.TRIAL_OK:
        tags[names.RUN_NAME] = f"trial-{number:03d}-{status}"
    return tags


def end_lost_trial(experiment_id: str, parent_id: str, number: int, reason: str) -> str:
    """End the run of trial ``number`` whose process died mid-trial FAILED, tagged as a failed trial with
    ``reason``; returns its id ('' when the process died before the run was created)."""
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        f"tags.{names.PARENT_RUN_ID} = '{parent_id}' and "
        f"tags.`{names.TRIAL_NUMBER}` = '{number}' and attributes.status = 'RUNNING'",
    )
    if not runs:
        return ""
    # twins of its run (its creating request sent twice): the one with what the trial logged is the trial
    run = max(runs, key=lambda r: (len(r.data.metrics) + len(r.data.params), r.info.start_time or 0))
    for other in runs:
        if other is not run:
            end_orphan(other, duplicate_reason(run.info.run_id), duplicate_of=run.info.run_id, client=client)
    tracking.log_results(run.info.run_id, {}, trial_end_tags(number, names.TRIAL_FAILED, reason))
    tracking.end_run(run.info.run_id, "FAILED")
    return run.info.run_id


def end_orphans(experiment_id: str, parent_id: str) -> list[str]:
    """Once every trial of a search has ended (its end): end the search's child runs still RUNNING without
    trial results, KILLED and tagged ``hyperflow.orphaned``. Nothing owns them: a trial's or the LR range
    test's twin, made when MLflow's HTTP client sent the creating request again (a server restart between the
    write and its answer). Runs without a role (not hyperflow's) are left alone. Returns their ids."""
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        f"tags.{names.PARENT_RUN_ID} = '{parent_id}' and attributes.status = 'RUNNING'",
        max_results=50000,
    )
    ended = []
    for run in runs:
        if names.ROLE in run.data.tags and names.TRIAL_STATUS not in run.data.tags:
            _end_orphan(run, twins(run, client, running=False), "no trial of its search owned it", client)
            ended.append(run.info.run_id)
    return ended


def _end_orphan(run: Any, others: list[Any], reason: str, client: Any) -> None:
    """End ``run`` as an orphan: a duplicate when one of ``others`` is its twin that its command went on with
    (same ``hyperflow.create_id``; ended, or holding the trial's results), else for ``reason``."""
    token = run.data.tags.get(names.CREATE_ID)
    kept = [
        r
        for r in others
        if token
        and r.data.tags.get(names.CREATE_ID) == token
        and r.info.run_id != run.info.run_id
        and (r.info.status != "RUNNING" or names.TRIAL_STATUS in r.data.tags)
    ]
    if kept:
        end_orphan(run, duplicate_reason(kept[0].info.run_id), duplicate_of=kept[0].info.run_id, client=client)
    else:
        end_orphan(run, reason, client=client)


def original_of(run: Any) -> str | None:
    """For a search run that is a twin (its creating request sent twice): the id of the run its search went
    on with (the one that recorded the search's settings); None for any other run."""
    if names.DUPLICATE_OF in run.data.tags:
        return run.data.tags[names.DUPLICATE_OF]
    if names.SETTINGS in run.data.tags:
        return None
    return next((r.info.run_id for r in twins(run, running=False) if names.SETTINGS in r.data.tags), None)


def end_unended_trials(experiment_id: str, parent_id: str, records: list[Any]) -> list[str]:
    """Trials the search holds results for (``records``: number, run_id, status, loss, epochs, history,
    reason) whose runs are still RUNNING once every worker has exited: a worker that died between trials lost
    the closing calls of its last one. Their results (less per-epoch metrics still buffered) are logged from
    the search's records and the runs ended as they finished; returns their ids."""
    by_run = {r.run_id: r for r in records if r.run_id}
    runs = MlflowClient().search_runs(
        [experiment_id], f"tags.{names.PARENT_RUN_ID} = '{parent_id}' and attributes.status = 'RUNNING'"
    )
    ended = []
    for run in runs:
        record = by_run.get(run.info.run_id)
        if record is None:
            continue
        failed = record.status == names.TRIAL_FAILED
        metrics = (
            {} if failed or record.loss is None else {names.BEST_VAL_LOSS: record.loss, "epochs_run": record.epochs}
        )
        tracking.log_results(
            run.info.run_id, metrics, trial_end_tags(record.number, record.status, record.reason, record.history)
        )
        tracking.end_run(run.info.run_id, "FAILED" if failed else "FINISHED")
        ended.append(run.info.run_id)
    return ended


class Progress:
    """The search run's ``best_val_loss`` curve (step = trials finished before), sent in batches every few seconds
    through ``send`` (the search's background calls)."""

    def __init__(self, run_id: str, send: Callable[..., Any]) -> None:
        self.run_id, self.send = run_id, send
        self.client = MlflowClient()
        self.points: list[Metric] = []
        self.sent = time.monotonic()

    def add(self, best: float, step: int) -> None:
        self.points.append(Metric(names.BEST_VAL_LOSS, best, int(time.time() * 1000), step))

    def flush(self, force: bool = False) -> None:
        if self.points and (force or time.monotonic() - self.sent >= PROGRESS_FLUSH_SECS):
            self.send(self.client.log_batch, self.run_id, metrics=self.points)
            self.points, self.sent = [], time.monotonic()


# ------------------------------------------------------------------------------ the search run (active)
def record_new_search(
    run_id: str, params: dict[str, str], tags: dict[str, str], space_path: Path | None, dataset: Dataset
) -> None:
    """A new search: every setting as a param and the settings and space tags (one call, after one look-up:
    under ``mlflow run`` the run already holds the ``-P`` values), the space file, the dataset."""
    tracking.log_params(run_id, params, tags=tags)
    if space_path is not None:
        mlflow.log_artifact(str(space_path), "space")
    tracking.log_dataset(dataset)


def record_resume(run_id: str, n: int, tags: dict[str, str], params: dict[str, str], space_text: str | None) -> None:
    """Resume ``n``: the count first (a resume cut short never leaves ``n`` to the next), then what changed."""
    mlflow.set_tags({**tags, names.RESUMES: str(n)})
    if space_text is not None:
        mlflow.log_text(space_text, f"space/resume-{n}/space.yaml")
    if params:
        tracking.log_params(run_id, params)


def set_stop_reason(reason: str) -> None:
    mlflow.set_tag(names.STOP_REASON, reason)


def set_model_status(status: str) -> None:
    mlflow.set_tag(names.MODEL_STATUS, status)


def record_best(run_id: str, number: int, loss: float, params: dict[str, Any]) -> None:
    mlflow.set_tag(names.BEST_RUN_ID, run_id)
    mlflow.set_tags({f"{names.BEST_PARAM_PREFIX}{k}": str(v) for k, v in params.items()})
    mlflow.log_dict({"trial": number, "run_id": run_id, "val_loss": loss, "params": params}, "best_params.json")


def best_test_metrics(search_run_id: str) -> dict[str, float]:
    """The best trial's test metrics as a search (perhaps cut short) logged them: ``test_*`` -> value."""
    metrics = MlflowClient().get_run(search_run_id).data.metrics
    return {k[len("best_") :]: v for k, v in metrics.items() if k.startswith(f"best_{names.TEST_PREFIX}")}


def log_test_metrics(best_run_id: str, test: dict[str, float]) -> None:
    """``best_test_*`` on the search run, ``test_*`` on the best trial's run."""
    mlflow.log_metrics({f"best_{k}": v for k, v in test.items()})
    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(best_run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in test.items()])


def log_trials_table(table: Any) -> None:
    """The trials as ``trials.csv`` (a pandas DataFrame)."""
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp, "trials.csv"), index=False)
        mlflow.log_artifact(str(Path(tmp, "trials.csv")))


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


# ------------------------------------------------------------------------------ Spark executors
def executor_environment() -> dict[str, str]:
    """What an executor needs to log: the tracking URI (a relative sqlite path made absolute) and the
    driver's MLFLOW_* settings (credentials, retries). It travels in memory, never into a run."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_") and k not in ("MLFLOW_RUN_ID",)}
    return {**env, "MLFLOW_TRACKING_URI": uri}


def open_store(experiment_id: str) -> None:
    """Open this process's connection to the store (a first call pays for it): the experiment is read."""
    mlflow.MlflowClient().get_experiment(experiment_id)


def use_environment(env: dict[str, str]) -> None:
    """On an executor: the driver's settings from :func:`executor_environment`."""
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
