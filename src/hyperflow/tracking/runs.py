"""The MLflow layer: runs, params, batched metrics, tags, datasets, figures and models.

Everything else in hyperflow stays free of MLflow; the trainer reaches this layer only through
:class:`MlflowMetrics`, a trainer callback.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import mlflow
import numpy as np
import pandas as pd
import sklearn
import torch
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType
from mlflow.utils.git_utils import get_git_commit

import hyperflow
from hyperflow.core.data import Dataset
from hyperflow.tracking.model import ALLOW_MISSING, BUNDLE, HyperflowModel, predict_bundle
from hyperflow.core.trainer import Callback, TrainResult

log = logging.getLogger(__name__)

ROLE_TAG = "hyperflow.role"
PACKAGE_DIR = Path(hyperflow.__file__).parent


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler so that open runs end as KILLED, like on Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"received signal {signum}")


@contextmanager
def tracked_run(role: str, *, experiment: str | None = None, run_name: str | None = None,
                parent_run_id: str | None = None, tags: dict[str, str] | None = None,
                run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under ``mlflow run`` or with ``run_id``, reopen) a run tagged with its role; always end
    it in a defined state: FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM."""
    if run_id is not None and mlflow.active_run() is None:  # reopening: MLflow insists on its experiment
        mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    elif experiment and not os.environ.get("MLFLOW_RUN_ID") and parent_run_id is None and run_id is None:
        mlflow.set_experiment(experiment)
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = previous is not None and _is_main_thread()
    if in_main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, parent_run_id=parent_run_id,
                           nested=parent_run_id is not None or (run_id is not None and mlflow.active_run() is not None),
                           tags={ROLE_TAG: role, "hyperflow.version": hyperflow.__version__, **(tags or {})})

    def end(status: str) -> None:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:  # unless the caller ended it already
            mlflow.end_run(status)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)

    with _ended_as(end):
        yield run


@contextmanager
def _ended_as(end: Any) -> Iterator[None]:
    """Calls ``end(status)`` on the way out: FINISHED, KILLED on Ctrl-C or SIGTERM, FAILED on an exception."""
    status = "FINISHED"
    try:
        yield
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as exc:
        status = "KILLED" if is_store_error(exc) else "FAILED"  # the store failed, not the run's code
        raise
    finally:
        if status == "FINISHED":
            end(status)
        else:
            try:
                end(status)
            except Exception as exc:  # e.g. the store is down: the exception in flight is the one to report
                log.debug("could not end a run as %s: %s", status, exc)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip("'\"").lower() in ("", "none") and b.strip("'\"").lower() in ("", "none")


def log_params(run_id: str, params: dict[str, str], fresh_run: bool = False) -> None:
    """Log params in one batch. Keys that ``mlflow run`` already logged keep their value when it means
    the same (``1e-3`` vs ``0.001``); a different resolved value goes to ``resolved.<key>`` because MLflow
    refuses to change a param. ``fresh_run`` skips the look-up for a run just created here."""
    client = MlflowClient()
    existing = {} if fresh_run else client.get_run(run_id).data.params
    fresh: dict[str, str] = {}
    for key, value in params.items():
        value = str(value)[:6000]
        if key not in existing:
            fresh[key] = value
        elif not _same_value(existing[key], value):
            fresh[f"resolved.{key}"] = value
    if fresh:
        client.log_batch(run_id, params=[Param(k, v) for k, v in fresh.items()])


def log_results(run_id: str, metrics: dict[str, float], tags: dict[str, str],
                pending: list[Metric] | None = None, params: dict[str, str] | None = None) -> None:
    """Final metrics and tags of a run, and any per-epoch metrics (and params) still buffered, in one call."""
    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(run_id, metrics=[*(pending or []), *(Metric(k, float(v), stamp, 0)
                                                                   for k, v in metrics.items())],
                             params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                             tags=[RunTag(k, str(v)) for k, v in tags.items()])


def call_now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The synchronous counterpart of ``BackgroundCalls.submit``."""
    return fn(*args, **kwargs)


def end_run_quietly(run_id: str, status: str) -> None:
    """End a run without MLflow's "View run … at" line, which costs a ``get_run`` per run on a server and
    would print once per trial."""
    with _env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"):
        MlflowClient().set_terminated(run_id, status)


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
def child_run(role: str, experiment_id: str, parent_run_id: str, run_name: str, tags: dict[str, str],
              send: Callable[..., Any] = call_now) -> Iterator[str]:
    """A child run made with the client, not the fluent API: no thread-local active run (safe in threads and
    on Spark executors) and none of the fluent start's context providers (a trial is cheap to open). Ends
    FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM; ``send`` (e.g. ``BackgroundCalls.submit``)
    decides when that last call goes out."""
    run = MlflowClient().create_run(experiment_id, run_name=run_name, tags={
        ROLE_TAG: role, "hyperflow.version": hyperflow.__version__, "mlflow.parentRunId": parent_run_id,
        "mlflow.runName": run_name, **tags})
    def end(status: str) -> None:
        try:
            send(end_run_quietly, run.info.run_id, status)
        except Exception:
            if status == "FINISHED":
                raise
            end_run_quietly(run.info.run_id, status)  # the background queue failed before it: try once directly

    with _ended_as(end):
        yield run.info.run_id


class BackgroundCalls:
    """MLflow calls sent in order by one background thread, so that a trial's closing calls (results, end)
    overlap the next trial's training instead of adding to it. ``drain`` waits for all of them (and
    re-raises the first failure); ``submit`` re-raises a failure of an earlier call, so an unreachable
    server stops the search within a trial. A kill -9 loses at most the calls still queued: those trials
    stay RUNNING and a resume ends them KILLED and runs them again."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyperflow-mlflow")
        self.futures: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._raise_failures(wait=False)
        self.futures.append(self.pool.submit(fn, *args, **kwargs))

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
        try:
            self.drain()
        finally:
            self.pool.shutdown(wait=True)


class MlflowMetrics(Callback):
    """Sends per-epoch metrics to MLflow in batches: at most one ``log_batch`` call per epoch, and no
    more often than every ``flush_secs`` seconds. A call costs ~15 ms on sqlite and ~50 ms against a
    server, more than a small model's epoch: flushing every epoch made a digits fit 1.27x slower, the
    default 1 s flush 1.03x (bench/tracking.py). ``params`` ride along with the first call."""

    def __init__(self, run_id: str, flush_secs: float = 1.0, prefix: str = "", flush_at_end: bool = True,
                 params: dict[str, str] | None = None) -> None:
        self.client, self.run_id, self.flush_secs, self.prefix = MlflowClient(), run_id, flush_secs, prefix
        self.flush_at_end = flush_at_end  # False: the caller sends ``pending`` with its own last call
        self.pending: list[Metric] = []
        self.pending_params = dict(params or {})
        self.last_flush = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self.last_flush = time.monotonic()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        stamp = int(time.time() * 1000)
        self.pending += [Metric(self.prefix + k, float(v), stamp, epoch) for k, v in metrics.items()]
        if time.monotonic() - self.last_flush >= self.flush_secs:
            self.flush()

    def on_train_end(self, trainer: Any, result: TrainResult) -> None:
        if self.flush_at_end:
            self.flush()

    def flush(self) -> None:
        if self.pending or self.pending_params:
            # the client chunks large batches
            self.client.log_batch(self.run_id, metrics=self.pending,
                                  params=[Param(k, str(v)[:6000]) for k, v in self.pending_params.items()])
            self.pending, self.pending_params = [], {}
        self.last_flush = time.monotonic()


def unique_run_name(role: str, data_name: str) -> str:
    """``<role>-<data>-<MMDD-HHMMSS>-<4 hex>``: says what the run is and never repeats (MLflow's own
    names come from the ``random`` module, which a seeded run re-seeds: every seed-42 run had one name)."""
    import secrets

    return f"{role}-{data_name}-{time.strftime('%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_tags(dataset: Dataset) -> dict[str, str]:
    tags = {"hyperflow.data_fingerprint": dataset.fingerprint, "hyperflow.task": dataset.task,
            "hyperflow.core.data": dataset.source}
    if dataset.target:
        tags["hyperflow.target"] = dataset.target
    dropped = getattr(dataset.preprocessor, "dropped", None)
    if dropped:
        tags["hyperflow.dropped_columns"] = ", ".join(dropped)[:5000]
    commit = get_git_commit(str(PACKAGE_DIR))
    if commit:
        tags["hyperflow.git_commit"] = commit
    return tags


def log_dataset(dataset: Dataset) -> None:
    """Record the dataset as the run's training input (name, digest, source, schema)."""
    source: Any = dataset.source
    if source.startswith("builtin:"):  # no file or URL behind it: describe it by name and version
        source = CodeDatasetSource({"hyperflow.builtin": dataset.name, "fingerprint": dataset.fingerprint})
    with warnings.catch_warnings():
        # MLflow's schema hint about integer columns concerns model signatures, not a dataset record, and a
        # local path matches two of its (identical) source types
        warnings.filterwarnings("ignore", message=".*(integer column|interpreted in multiple ways).*")
        if isinstance(dataset.raw_all, pd.DataFrame):
            data = mlflow.data.from_pandas(dataset.raw_all, source=source, targets=dataset.target,
                                           name=dataset.name)
        else:
            X, y = dataset.raw_all
            data = mlflow.data.from_numpy(X, targets=y, source=source, name=dataset.name)
        mlflow.log_input(data, context="training", tags={"fingerprint": dataset.fingerprint})


def log_figure(figure: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def _signature(dataset: Dataset, example_output: Any) -> ModelSignature:
    """Tables: every raw feature column by name, typed ``Any`` and optional, because the model itself
    converts what clients send (ints for a float column, numbers as text, bools, nulls) and names the
    columns a request lacks — MLflow's typed columns would refuse ``int64`` for ``double`` before the model
    sees the row. Param ``allow_missing_columns`` opts in to imputing absent columns."""
    pre = dataset.preprocessor
    params = None
    if pre.kind == "table":
        inputs = Schema([ColSpec(AnyType(), c, required=False) for c in pre.columns])
        params = ParamSchema([ParamSpec(ALLOW_MISSING, "boolean", False)])
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *pre.image_shape))])
    if isinstance(example_output, pd.DataFrame):
        outputs = Schema([ColSpec(_output_type(example_output[c]), c) for c in example_output.columns])
    else:
        outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *example_output.shape[1:]))])
    return ModelSignature(inputs, outputs, params)


def _output_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double"}.get(kind, "string")


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def pip_requirements() -> list[str]:
    """Pinned to what trained the model; explicit so that MLflow does not spend seconds inferring them."""
    import cloudpickle

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}",
            f"cloudpickle=={cloudpickle.__version__}", "pyyaml", "tqdm", "matplotlib"]


def log_model(model: torch.nn.Module, model_spec: dict[str, Any], dataset: Dataset,
              registered_model_name: str | None = None, user_code: list[str] | None = None) -> Any:
    """Log the model with its preprocessing as a pyfunc (signature, input example, explicit pip
    requirements, hyperflow's code bundled) and register it when a name is given."""
    bundle = {"model_spec": model_spec, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
              "preprocessor": dataset.preprocessor, "task": dataset.task, "classes": dataset.classes,
              "target_mean": dataset.target_mean, "target_std": dataset.target_std,
              "hyperflow_version": hyperflow.__version__}
    example = dataset.raw_example
    output = predict_bundle(bundle, model.cpu().eval(), example)
    # no "Downloading artifacts" bar while MLflow checks the input example against the saved model
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _quiet("mlflow.pyfunc"), \
            _env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"):
        warnings.simplefilter("ignore")  # MLflow's generic advice on pickled models and type hints
        path = Path(tmp, "bundle.pkl")
        with path.open("wb") as fh:
            pickle.dump(bundle, fh)
        return mlflow.pyfunc.log_model(
            name="model", python_model=HyperflowModel(), artifacts={BUNDLE: str(path)},
            code_paths=[str(PACKAGE_DIR), *(user_code or [])], signature=_signature(dataset, output),
            input_example=example, pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name)


def log_lr_finder(run_id: str, finder: Any, rule: str) -> None:
    """The range test's curve (step = iteration), suggestion, range, status and its plot and CSV."""
    from hyperflow.core.lr_finder import STATUS_HELP
    from hyperflow.core.plots import lr_finder_curve

    stamp = int(time.time() * 1000)
    metrics = [Metric("lr_find_loss", float(v), stamp, i) for i, v in enumerate(finder.losses_)]
    metrics += [Metric("lr_find_smoothed_loss", float(v), stamp, i) for i, v in enumerate(finder.smoothed_)]
    metrics += [Metric("lr_find_lr", float(v), stamp, i) for i, v in enumerate(finder.lrs_)]
    metrics += [Metric("suggested_lr", finder.suggested_lr_, stamp, 0),
                Metric("lr_range_min", finder.lr_range_[0], stamp, 0),
                Metric("lr_range_max", finder.lr_range_[1], stamp, 0),
                Metric("lr_find_suggestion_spread", finder.suggestion_spread_, stamp, 0)]
    client = MlflowClient()
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, "lr_find_status", finder.status_)
    client.set_tag(run_id, "lr_find_status_help", STATUS_HELP[finder.status_])
    figure = lr_finder_curve(finder.lrs_, finder.losses_, finder.smoothed_, finder.suggested_lr_, finder.lr_range_,
                             finder.status_, finder.band_, rule)
    log_figure(figure, "plots/lr_find.png")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "lr_find.csv")
        finder.to_frame().to_csv(path, index=False)
        client.log_artifact(run_id, str(path))


def tag_challenger(name: str, version: str, tags: dict[str, str]) -> None:
    """Point the alias ``challenger`` at a registered model version, then tag it (in the order given): the
    last tag marks the whole step done, so a step cut short shows and can be done again."""
    client = MlflowClient()
    client.set_registered_model_alias(name, "challenger", version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


# ------------------------------------------------------------------------------------- run lifecycle (end)

STORE_ERROR_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "ENDPOINT_NOT_FOUND",
                     "IO_ERROR", "DEADLINE_EXCEEDED", "SERVICE_UNDER_MAINTENANCE", "PERMISSION_DENIED",
                     "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"}


def is_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the tracking or artifact store failing — a database error, an
    unreachable or failing server, a file system refusing a write — rather than the code that called it."""
    import sqlite3

    import requests
    from mlflow.exceptions import MlflowException, RestException

    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
        db_errors: tuple[type, ...] = (DBAPIError, OperationalError, sqlite3.Error)
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        db_errors = (sqlite3.Error,)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (*db_errors, requests.RequestException, ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return True
        if isinstance(exc, RestException) and exc.error_code in STORE_ERROR_CODES:
            return True  # the server answered with an error of its own (a 5xx, unavailable, refused)
        if isinstance(exc, MlflowException) and exc.error_code in STORE_ERROR_CODES - {"INTERNAL_ERROR"}:
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # `from None` ends the chain
    return False


def store_error_text(exc: BaseException) -> str:
    """One line for a store failure: the deepest cause that says what the store did (``sqlite3.OperationalError:
    attempt to write a readonly database``, ``ConnectionRefusedError: [Errno 111] Connection refused``), not the
    wrapper's first line."""
    import sqlite3

    import requests

    found, seen = exc, set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (sqlite3.Error, requests.RequestException, OSError)) or hasattr(current, "orig"):
            found = getattr(current, "orig", None) or current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return one_line(found)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: for a one-line error report."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def finished_model(run_id: str, name: str = "model") -> Any | None:
    """The model logged (and fully uploaded: status READY) by run ``run_id`` under ``name``, or None."""
    from mlflow.entities import LoggedModelStatus

    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    models = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    ready = [m for m in models if m.status == LoggedModelStatus.READY]
    return max(ready, key=lambda m: m.creation_timestamp) if ready else None


def version_of_run(name: str, run_id: str) -> Any | None:
    """The registered version of model ``name`` that run ``run_id`` produced (the oldest), or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register_once(model_uri: str, name: str, run_id: str) -> tuple[Any, bool]:
    """(version, created): the version of ``name`` that run ``run_id`` already registered, else a new one."""
    existing = version_of_run(name, run_id)
    if existing is not None:
        return existing, False
    with _quiet("mlflow.tracking._model_registry.client"):
        version = mlflow.register_model(model_uri, name)
    return version, True
