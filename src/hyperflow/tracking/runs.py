"""Runs: a command's runs (fluent API) that always end in a defined state (signals included), a finished run
reopened, their params, results and tags, twin runs (one create request served twice) ended as duplicates,
and run names. Child runs made with the client are :mod:`hyperflow.tracking.child_runs`.

The trainer reaches MLflow only through callbacks (:mod:`hyperflow.tracking.callbacks`); workflows call
the functions here instead of ``mlflow`` itself.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.git_utils import get_git_commit

from hyperflow import names
from hyperflow.core.data import Dataset
from hyperflow.runtime import signals
from hyperflow.tracking.background_calls import PendingRun, run_id_of
from hyperflow.tracking.experiments import mark_model_training, raise_if_deleted, use_experiment, use_experiment_of_run
from hyperflow.tracking.run_ends import COMMAND_RUNS, ended_as
from hyperflow.version import version

log = logging.getLogger(__name__)

MlflowError = MlflowException  # MLflow's exception type, for callers that catch it without importing mlflow
ROLE_TAG = names.ROLE
PACKAGE_DIR = Path(__file__).parent.parent  # the hyperflow package


@contextmanager
def tracked_run(
    role: str,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under ``mlflow run`` or with ``run_id``, reopen) a run tagged with its role; always end
    it in a defined state: FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM. The experiment of a run
    that is no child is marked for MLflow's model-training view (:mod:`hyperflow.tracking.experiments`)."""
    marked = True
    if run_id is not None and mlflow.active_run() is None:  # reopening: MLflow insists on its experiment
        use_experiment_of_run(run_id)
    elif experiment and not os.environ.get("MLFLOW_RUN_ID") and parent_run_id is None and run_id is None:
        use_experiment(experiment)
    else:  # MLflow's choice (the environment, mlflow run's run, the default) or a child's: known once it started
        marked = False
    with signals.sigterm_stops():  # a SIGTERM ends the run KILLED, as Ctrl-C does
        nested = parent_run_id is not None or mlflow.active_run() is not None  # e.g. inside the user's own run
        created = creation_tag() if run_id is None and not os.environ.get("MLFLOW_RUN_ID") else {}  # else a reopen
        tags = {ROLE_TAG: role, names.VERSION: version(), **created, **(tags or {})}
        try:
            run = mlflow.start_run(
                run_id=run_id,
                run_name=None if run_id else run_name,
                parent_run_id=parent_run_id,
                nested=nested,
                tags=tags,
            )
        except BaseException as exc:
            raise_if_deleted(exc, experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME"))
            raise
        COMMAND_RUNS.started.append(run.info.run_id)

        def end(status: str) -> None:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run.info.run_id:  # unless the caller ended it already
                if status != "KILLED":  # not on an interrupt or a store failure: the user wants out, the store is down
                    end_twins(run)
                mlflow.end_run(status)
            if mlflow.active_run() is None:  # the command's last run: a signal now ends it with its code
                signals.work_done()

        with ended_as(end):
            if not marked and not nested:
                mark_model_training(run.info.experiment_id)
            yield run


def same_param_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip("'\"").lower() in ("", "none") and b.strip("'\"").lower() in ("", "none")


def log_params(run_id: str, params: dict[str, str], tags: dict[str, str] | None = None) -> None:
    """Log params (and ``tags``) in one batch. Keys that ``mlflow run`` already logged keep their value when
    it means the same (``1e-3`` vs ``0.001``); a different resolved value goes to ``resolved.<key>`` because
    MLflow refuses to change a param. The run's params are always looked up first: whether ``mlflow run``
    made the run cannot be told from here (``mlflow.start_run`` unsets ``MLFLOW_RUN_ID`` once it used it)."""
    client = MlflowClient()
    existing = client.get_run(run_id).data.params
    fresh: dict[str, str] = {}
    for key, value in params.items():
        value = str(value)[:6000]
        if key not in existing:
            fresh[key] = value
        elif not same_param_value(existing[key], value):
            fresh[f"resolved.{key}"] = value
    if fresh or tags:
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in fresh.items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )


def log_results(
    run_id: str | PendingRun,
    metrics: dict[str, float],
    tags: dict[str, str],
    pending: list[Metric] | None = None,
    params: dict[str, str] | None = None,
) -> None:
    """Final metrics and tags of a run, and any per-epoch metrics (and params) still buffered, in one call."""
    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id_of(run_id),
        metrics=[*(pending or []), *(Metric(k, float(v), stamp, 0) for k, v in metrics.items())],
        params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )


def end_run_quietly(run_id: str | PendingRun, status: str, end_time: int | None = None) -> None:
    """End a run without MLflow's "View run … at" line, which costs a ``get_run`` per run on a server and
    would print once per trial. ``end_time`` (ms): when it ended, if the call goes out later."""
    with _env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"):
        MlflowClient().set_terminated(run_id_of(run_id), status, end_time=end_time)


def creation_tag() -> dict[str, str]:
    """The tag that makes a run's twins known: MLflow's HTTP client sends a request again when its answer is
    lost (a tracking server restarted after the write and before the answer), and the server then creates the
    run twice; the client goes on with the second. Both carry this tag's value."""
    import uuid

    return {names.CREATE_ID: uuid.uuid4().hex}


def twins(run: Any, client: Any = None, running: bool = True) -> list[Any]:
    """The other runs created by the request that created ``run`` (tag ``hyperflow.create_id``), RUNNING ones
    only when ``running``; none for a run made without the tag (``mlflow run``'s, an older hyperflow's)."""
    token = run.data.tags.get(names.CREATE_ID)
    if not token:
        return []
    query = f"tags.`{names.CREATE_ID}` = '{token}'" + (" and attributes.status = 'RUNNING'" if running else "")
    found = (client or MlflowClient()).search_runs([run.info.experiment_id], query, max_results=100)
    return [r for r in found if r.info.run_id != run.info.run_id]


def end_orphan(run: Any, reason: str, duplicate_of: str | None = None, client: Any = None) -> None:
    """End a RUNNING run that nothing owns (a twin, or a trial whose search stopped) KILLED, tagged with
    ``reason`` (``hyperflow.orphaned``); a twin also names the run its command went on with
    (``hyperflow.duplicate_of``) and is renamed ``<name>-duplicate``, so that no two runs share a name."""
    client = client or MlflowClient()
    tags = [RunTag(names.ORPHANED, reason[:5000])]
    if duplicate_of:
        name = run.data.tags.get(names.RUN_NAME) or run.info.run_name or "run"
        tags += [RunTag(names.DUPLICATE_OF, duplicate_of), RunTag(names.RUN_NAME, f"{name}-duplicate")]
    client.log_batch(run.info.run_id, tags=tags)
    end_run_quietly(run.info.run_id, "KILLED")


def duplicate_reason(original: str) -> str:
    return (
        f"a duplicate of run {original}: the request that created that run was sent twice (retried after "
        f"its answer was lost, e.g. across a tracking-server restart)"
    )


def end_twins(run: Any) -> list[str]:
    """End ``run``'s twins left RUNNING (see :func:`creation_tag`) as duplicates of it; returns their ids. Best
    effort: a failure to look or to end them leaves them as they were and says so in the debug log."""
    try:
        found = twins(run)
        for twin in found:
            end_orphan(twin, duplicate_reason(run.info.run_id), duplicate_of=run.info.run_id)
        return [t.info.run_id for t in found]
    except Exception as exc:
        log.debug("could not end the twins of run %s: %s", run.info.run_id, exc)
        return []


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """An MLflow environment setting for the duration of one call, then as it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def unique_run_name(role: str, data_name: str) -> str:
    """``<role>-<data>-<MMDD-HHMMSS>-<4 hex>``: says what the run is and never repeats (MLflow's own
    names come from the ``random`` module, which a seeded run re-seeds: every seed-42 run had one name)."""
    import secrets

    return f"{role}-{data_name}-{time.strftime('%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_tags(dataset: Dataset) -> dict[str, str]:
    tags = {names.DATA_FINGERPRINT: dataset.fingerprint, names.TASK: dataset.task, names.DATA_SOURCE: dataset.source}
    if dataset.target:
        tags[names.TARGET] = dataset.target
    dropped = getattr(dataset.preprocessor, "dropped", None)
    if dropped:
        tags[names.DROPPED_COLUMNS] = ", ".join(dropped)[:5000]
    commit = get_git_commit(str(PACKAGE_DIR))
    if commit:
        tags[names.GIT_COMMIT] = commit
    tags[names.CODE_VERSION] = code_version()
    return tags


@functools.cache
def code_version() -> str:
    """A hash of hyperflow's own source files: changes whenever the code does, git or not."""
    digest = hashlib.sha256(version().encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def reopened_run(run_id: str) -> Iterator[mlflow.ActiveRun]:
    """Reopen a finished run to add to it (a trial's model, its test metrics); it ends FINISHED again
    whatever happens inside: a failure after a run finished cannot undo that it finished. A kill -9 inside
    leaves it RUNNING with its results in place, which a resume reads as finished."""
    run = mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)

    def end() -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            with _env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"):
                mlflow.end_run("FINISHED")  # leaves the active-run stack first, so a failure here leaves it clean

    try:
        yield run
    except BaseException:
        try:
            end()
        except Exception as exc:
            log.debug("could not end run %s again: %s", run_id, exc)
        raise
    end()
