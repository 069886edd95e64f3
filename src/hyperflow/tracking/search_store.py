"""A search and its trials in the store, for the search workflow (``hyperflow.workflows.search`` and its modules;
the engine, ``hyperflow.engine``, makes no MLflow call): a search run and its trials read back (the source of
truth for resume), and the trials' runs ended as they finished: a lost trial's, orphans and twins, those whose
closing calls a worker lost. Trial runs themselves open and close through ``tracking.child_run`` /
``tracking.log_results``; the search run's own record is :mod:`hyperflow.tracking.search_record`, what a worker
or an executor needs to log :mod:`hyperflow.tracking.worker_environment`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names, tracking
from hyperflow.errors import without_credentials
from hyperflow.tracking import new_store
from hyperflow.tracking.runs import duplicate_reason, end_orphan, twins

_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class UnreadableRun(Exception):
    """A run could not be read for another reason than its absence; ``cause`` is MLflow's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@contextmanager
def quiet_logs(*others: str) -> Iterator[None]:
    """MLflow's traceback per database error (and the loggers named) silenced for the duration: the search
    reports a store failure once, in one line. Loggers already silenced (a trial inside its search) are left
    alone: each ``setLevel`` clears every logger's cache, ~1 ms a trial."""
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", *others)]
    loggers = [logger for logger in loggers if logger.level != logging.CRITICAL]
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
        loss = float(tags[names.TRIAL_LOSS]) if names.TRIAL_LOSS in tags else run.data.metrics.get(names.BEST_VAL_LOSS)
        if names.VAL_LOSS_HISTORY in tags:
            history = [float(v) for v in json.loads(tags[names.VAL_LOSS_HISTORY])]
        else:  # written before the tag existed, or too long for a tag: the trainer's val_loss, an objective's value
            metric = names.OBJECTIVE_VALUE if names.TRIAL_LOSS in tags else names.VAL_LOSS
            history = [
                m.value for m in sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
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


def trial_end_tags(
    number: int, status: str, reason: str, history: list[float] | None = None, loss: float | None = None
) -> dict[str, str]:
    """The tags that close a trial's run: its status and reason, its val_loss curve (read back by pruning and
    resume; left out when too long for a tag), an objective's loss exactly (``loss``), and for a pruned or
    failed trial a run name that says so (the runs table shows names by default)."""
    tags = {names.TRIAL_STATUS: status, names.TRIAL_REASON: without_credentials(reason)}
    if loss is not None:
        tags[names.TRIAL_LOSS] = repr(float(loss))
    if history is not None:
        curve = json.dumps([float(f"{v:.6g}") for v in history])
        if len(curve) <= 5000:
            tags[names.VAL_LOSS_HISTORY] = curve
    if status != names.TRIAL_OK:
        tags[names.RUN_NAME] = f"trial-{number:03d}-{status}"
    return tags


def log_trial_end(
    run: Any,
    final: dict[str, float],
    metrics: Any,
    number: int,
    status: str,
    reason: str,
    history: list[float],
    loss: float | None = None,
    send: Callable[..., Any] = tracking.call_now,
) -> None:
    """A trial's results in one call: its ``final`` metrics, the tags that close it (:func:`trial_end_tags`) and
    what its ``metrics`` (a :class:`~hyperflow.tracking.callbacks.MlflowMetrics`) still buffer, through ``send``."""
    tags = trial_end_tags(number, status, reason, history, loss)
    send(tracking.log_results, run, final, tags, pending=metrics.pending, params=metrics.pending_params)


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
