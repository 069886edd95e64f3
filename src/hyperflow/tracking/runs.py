"""Runs: parent and child runs that always end in a defined state (signals included), their params,
results and tags, calls sent by a background thread, and run names.

The trainer reaches MLflow only through callbacks (:mod:`hyperflow.tracking.callbacks`); workflows call
the functions here instead of ``mlflow`` itself.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.git_utils import get_git_commit

import hyperflow
from hyperflow import names
from hyperflow.core.data import Dataset
from hyperflow.errors import one_line
from hyperflow.runtime import signals
from hyperflow.tracking.experiments import raise_if_deleted, tracking_uri, use_experiment
from hyperflow.tracking.faults import is_store_error, store_error_text

log = logging.getLogger(__name__)

MlflowError = MlflowException  # MLflow's exception type, for callers that catch it without importing mlflow
ROLE_TAG = names.ROLE
PACKAGE_DIR = Path(hyperflow.__file__).parent


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
    it in a defined state: FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM."""
    if run_id is not None and mlflow.active_run() is None:  # reopening: MLflow insists on its experiment
        mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    elif experiment and not os.environ.get("MLFLOW_RUN_ID") and parent_run_id is None and run_id is None:
        use_experiment(experiment)
    with signals.sigterm_stops():  # a SIGTERM ends the run KILLED, as Ctrl-C does
        nested = parent_run_id is not None or (run_id is not None and mlflow.active_run() is not None)
        created = creation_tag() if run_id is None and not os.environ.get("MLFLOW_RUN_ID") else {}  # else a reopen
        tags = {ROLE_TAG: role, names.VERSION: hyperflow.__version__, **created, **(tags or {})}
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
        _RUNS.started.append(run.info.run_id)

        def end(status: str) -> None:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run.info.run_id:  # unless the caller ended it already
                if status != "KILLED":  # not on an interrupt or a store failure: the user wants out, the store is down
                    end_twins(run)
                mlflow.end_run(status)
            if mlflow.active_run() is None:  # the command's last run: a signal now ends it with its code
                signals.work_done()

        with _ended_as(end):
            yield run


@contextmanager
def _ended_as(end: Any) -> Iterator[None]:
    """Calls ``end(status)`` on the way out: FINISHED, KILLED on Ctrl-C or SIGTERM, FAILED on an exception."""
    status = "FINISHED"
    try:
        yield
    except KeyboardInterrupt as exc:
        status = "KILLED"
        _let_go(exc)
        raise
    except BaseException as exc:
        status = "KILLED" if is_store_error(exc) else "FAILED"  # the store failed, not the run's code
        raise
    finally:
        if status == "FINISHED":
            end(status)
            _RUNS.ended.append(status)
        else:
            try:
                end(status)
                _RUNS.ended.append(status)
            except Exception as exc:  # e.g. the store is down: the exception in flight is the one to report
                log.debug("could not end a run as %s: %s", status, exc)
                _RUNS.unended.append(f"{status}: {one_line(exc, 200)}")


@dataclass
class _CommandRuns:
    """The runs of the command under way, for the one line that ends it (:func:`forget_runs` between commands)."""

    started: list[str] = field(default_factory=list)  # the ids of the runs started (or reopened), first first
    ended: list[str] = field(default_factory=list)  # the statuses runs were ended with
    unended: list[str] = field(default_factory=list)  # why runs could not be ended after an interrupt or a failure


_RUNS = _CommandRuns()


def forget_runs() -> None:
    """The command has returned: the next one starts with no runs of its own."""
    _RUNS.started.clear()
    _RUNS.ended.clear()
    _RUNS.unended.clear()


def interrupted_runs() -> str:
    """How an interrupt left the command's runs: ended KILLED, unless the store refused to end one."""
    if _RUNS.unended:
        return f"a run could not be ended ({_RUNS.unended[-1]}) and stays RUNNING (a resume ends it)"
    if _RUNS.ended and "KILLED" not in _RUNS.ended:  # the signal came after the work: nothing was cut short
        return f"its runs had ended ({', '.join(sorted(set(_RUNS.ended)))}) and stay as they are"
    return "its runs were ended as KILLED"


def store_failure(exc: BaseException) -> str:
    """The one line for a tracking store that failed under a command: the store (without credentials), what
    it did, and what was written: nothing, or the command's runs and how they were left."""
    text = f"the tracking store {tracking_uri()} failed: {store_error_text(exc)}"
    started, unended = _RUNS.started, _RUNS.unended
    if not started:
        return f"{text}; nothing was written: run the command again once the store works"
    runs = f"run{'s' if len(started) > 1 else ''} {', '.join(started)}"
    if unended:
        return f"{text}; {runs} could not be ended and stay{'' if len(started) > 1 else 's'} RUNNING ({unended[-1]})"
    return f"{text}; {runs} ended {'/'.join(sorted(set(_RUNS.ended)))} with what reached the store"


def _let_go(interrupt: BaseException) -> None:
    """Drop what the interrupted code held. Ctrl-C inside a database write leaves its cursor in the frames of
    the traceback, and sqlite keeps the write lock until the statement is gone (closing the connection waits
    for it), so ending the run would wait out the 20 s busy timeout and fail. The frames' local variables are
    cleared (the traceback itself stays), then the reference cycles they were in are collected."""
    import gc
    import traceback

    traceback.clear_frames(interrupt.__traceback__)
    gc.collect()


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


def call_now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The synchronous counterpart of ``BackgroundCalls.submit``: returns what the call returns."""
    return fn(*args, **kwargs)


class PendingRun:
    """A run whose creating call was sent (perhaps still queued): ``id`` waits for that call and raises
    what it raised."""

    def __init__(self, created: Any) -> None:
        self.created = created  # the Run, or a Future of it

    @property
    def id(self) -> str:
        created = self.created.result() if isinstance(self.created, Future) else self.created
        if created is None:
            raise RuntimeError("the call that was to create this run failed")
        return created.info.run_id


def run_id_of(run: str | PendingRun) -> str:
    return run if isinstance(run, str) else run.id


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


@contextmanager
def child_run(
    role: str,
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    tags: dict[str, str],
    send: Callable[..., Any] = call_now,
) -> Iterator[PendingRun]:
    """A child run made with the client, not the fluent API: no thread-local active run (safe in threads and
    on Spark executors) and none of the fluent start's context providers (a trial is cheap to open). Ends
    FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM.

    ``send`` decides when the calls go out: ``call_now``, or ``BackgroundCalls.submit`` so that creating the
    run and ending it overlap training; it returns the call's result or a Future of it. Start and end times
    are taken here, so a call sent later still records when the run started and ended."""
    client = MlflowClient()
    created = send(
        client.create_run,
        experiment_id,
        start_time=int(time.time() * 1000),
        run_name=run_name,
        tags={
            ROLE_TAG: role,
            names.VERSION: hyperflow.__version__,
            names.PARENT_RUN_ID: parent_run_id,
            names.RUN_NAME: run_name,
            **creation_tag(),
            **tags,
        },
    )
    if created is None:
        raise TypeError("child_run's send must return the call's result or a Future of it")
    run = PendingRun(created)

    def end(status: str) -> None:
        ended = int(time.time() * 1000)
        try:
            send(end_run_quietly, run, status, ended)
        except Exception:
            if status == "FINISHED":
                raise
            end_run_quietly(run, status, ended)  # the background queue failed before it: try once directly

    with _ended_as(end):
        yield run


class BackgroundCalls:
    """MLflow calls sent in order by one background thread, so that a trial's calls (creating its run,
    results, end) overlap training instead of adding to it. ``drain`` waits for all of them (and re-raises
    the first failure); ``submit`` re-raises a failure of an earlier call, so an unreachable server stops the
    search within a trial. Once a call has failed, the calls queued behind it are not sent (each raises that
    failure): a trial whose results were refused is never ended FINISHED without them. A kill -9 loses at
    most the calls still queued: those trials stay RUNNING and a resume ends them KILLED and runs them again."""

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyperflow-mlflow")
        self.failure: BaseException | None = None  # the first call that failed (set on the worker thread)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)``; returns its Future (its failure also surfaces here or at drain)."""
        self._raise_failures(wait=False)
        future = self.pool.submit(self._call, fn, args, kwargs)
        self.futures.append(future)
        return future

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        if self.failure is not None:
            raise self.failure
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            self.failure = exc
            raise

    def drain(self) -> None:
        self._raise_failures(wait=True)

    def _raise_failures(self, wait: bool) -> None:
        pending = []
        for future in self.futures:
            if wait or future.done():
                future.result()  # raises what the call raised
            else:
                pending.append(future)
        self.futures = pending

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            self.pool.shutdown(wait=True)


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
    digest = hashlib.sha256(hyperflow.__version__.encode())
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


# ------------------------------------------------------------------------------ the active run, and others


def set_tag(key: str, value: Any) -> None:
    """A tag of the active run."""
    mlflow.set_tag(key, value)


def set_tags(tags: dict[str, Any]) -> None:
    """Tags of the active run, in one call."""
    mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float]) -> None:
    """Metrics of the active run (step 0), in one call."""
    mlflow.log_metrics(metrics)


def end_run(run_id: str, status: str, client: Any = None) -> None:
    """End run ``run_id`` as ``status`` (e.g. KILLED for a run whose process is gone)."""
    (client or MlflowClient()).set_terminated(run_id, status)


def runs_tagged(
    experiment_id: str, tag: str, value: str, *, finished: bool = False, max_results: int = 20, client: Any = None
) -> list[Any]:
    """Runs of an experiment whose tag ``tag`` is ``value`` (only FINISHED ones when ``finished``)."""
    query = f"tags.`{tag}` = '{value}'" + (" and attributes.status = 'FINISHED'" if finished else "")
    return (client or MlflowClient()).search_runs([experiment_id], query, max_results=max_results)
