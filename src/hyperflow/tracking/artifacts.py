"""Artifacts and inputs of a run: figures, JSON and folders, the dataset as the run's training input, and
the LR range test's curve, suggestion and plot (its run is the lr_find workflow's)."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_DATASET_SCHEMA_SIZE  # 1 MiB - 1 characters

from hyperflow import names
from hyperflow.core.data import Dataset
from hyperflow.errors import ArtifactStoreError, ArtifactStoreUnusable, one_line

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ the artifact store's faults


_HINTS = {
    errno.ENOSPC: "free disk space there",
    errno.EDQUOT: "free space within the disk quota there",
    errno.EACCES: "make it writable for this user",
    errno.EPERM: "make it writable for this user",
    errno.EROFS: "it is on a read-only file system",
    errno.ENOTDIR: "a file stands where a folder must be: move that file away",
    errno.EEXIST: "a file stands where a folder must be: move that file away",
}
_ELSEWHERE = (
    "or send the artifacts elsewhere: mlflow experiments create --experiment-name NAME "
    "--artifact-location DIR, then experiment=NAME"
)


def local_folder(uri: str) -> str | None:
    """The local folder an artifact URI names (a ``file:`` URI or a plain path), or None for a remote store."""
    from urllib.parse import urlsplit

    from mlflow.utils.file_utils import local_file_uri_to_path

    scheme = urlsplit(uri).scheme
    if scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt"):  # "c:" is a drive
        return None
    return os.path.abspath(local_file_uri_to_path(uri))


def _blocking_file(path: str) -> str | None:
    """The file that stands where ``path`` or one of its parent folders must be, if any."""
    current = Path(path)
    for folder in [current, *current.parents]:
        if folder.exists() or folder.is_symlink():
            return None if folder.is_dir() else str(folder)
    return None


def _hint(exc: BaseException, path: str | None = None) -> str:
    code = getattr(exc, "errno", None)
    blocking = _blocking_file(path) if path and code in (errno.ENOTDIR, errno.EEXIST) else None
    if blocking:
        return f"the file {blocking} stands where a folder must be: move it away, {_ELSEWHERE}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return (
            f"the server refused the upload (HTTP {status}): check the server's artifact storage "
            f"(--artifacts-destination: space, permissions) and your access"
        )
    return _HINTS.get(code, "check that it is a folder this user can write, with space left") + f", {_ELSEWHERE}"


def _is_write_fault(exc: BaseException) -> bool:
    """Whether a failed artifact write was the store (a local file system or a server's artifact endpoint
    refusing) rather than the calling code: an OSError other than a missing source file, an HTTP error answer,
    or a cloud SDK's error. A refused connection is left as it is: the tracking store is probably down too."""
    import requests

    if isinstance(exc, requests.HTTPError):
        return True
    if isinstance(exc, requests.RequestException):
        return False
    if isinstance(exc, OSError):
        return not isinstance(exc, FileNotFoundError)
    return type(exc).__module__.split(".")[0] in ("botocore", "boto3", "google", "azure")


def check_writable(experiment: str | None = None, run_id: str | None = None) -> None:
    """Before a run is created: refuse (ArtifactStoreUnusable, exit 2) when its artifacts would go to a local
    folder that cannot be written — e.g. a file named ``mlruns`` where MLflow's default folder should be — by
    creating the folder and writing a probe file in it. The folder is the artifact location of the experiment
    a top-level run with this ``experiment`` goes to, or that of run ``run_id`` (a run to be reopened, e.g. a
    resumed search) or, under ``mlflow run``, of the run it made. Remote stores are
    not probed (a probe would leave an object behind); their refusals are reported when a write fails."""
    from hyperflow.tracking.experiments import current_experiment_id

    client = MlflowClient()
    run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        uri, where = client.get_run(run_id).info.artifact_uri, f"of run {run_id}"
    else:
        experiment_id = current_experiment_id(experiment)
        if experiment_id is None:  # MLflow decides when the run starts (an experiment it is yet to create)
            return
        found = client.get_experiment(experiment_id)
        uri, where = found.artifact_location, f"of experiment '{found.name}'"
    path = local_folder(uri) if uri else None
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".hyperflow-write-check-") as probe:
            probe.write(b"hyperflow checks that artifacts can be written here\n")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise ArtifactStoreUnusable(
            f"the artifact location {path} ({where}) cannot be written: {one_line(exc)}; {_hint(exc, path)}"
        ) from None


@contextmanager
def artifact_write(what: str, run_id: str | None = None) -> Iterator[None]:
    """Around a write to the artifact store of run ``run_id`` (default: the active run): a refusal by the store
    becomes ArtifactStoreError — one line naming the artifact, the store and what to do — and the run is
    tagged with it (``hyperflow.failure_reason``); any other error passes as it is."""
    active = mlflow.active_run()
    if run_id is None or (active is not None and active.info.run_id == run_id):
        info = active.info if active is not None else None
    else:
        info = MlflowClient().get_run(run_id).info  # outside the guard: a tracking store failure stays one
    try:
        yield
    except ArtifactStoreError:
        raise
    except Exception as exc:
        if info is None or not _is_write_fault(exc):
            raise
        log.debug("artifact write failed", exc_info=True)
        uri = info.artifact_uri
        where = local_folder(uri) or uri
        message = (
            f"run {info.run_id} could not save {what} to its artifact store {where}: {one_line(exc)}; "
            f"{_hint(exc, local_folder(uri))}"
        )
        try:
            MlflowClient().set_tag(info.run_id, names.FAILURE_REASON, message[:5000])
        except Exception as tag_failure:  # the message still says it all
            log.debug("could not tag run %s: %s", info.run_id, tag_failure)
        raise ArtifactStoreError(message, exc) from None


def log_dataset(dataset: Dataset) -> None:
    """Record the dataset as the run's training input (name, digest, source, schema). A schema longer than
    MLflow stores (a table of some 15,000 columns or more) is left out, and input tag ``schema`` says so:
    the run's model signature still names every column."""
    source: Any = dataset.source
    if source.startswith("builtin:"):  # no file or URL behind it: describe it by name and version
        source = CodeDatasetSource({names.BUILTIN_DATASET: dataset.name, "fingerprint": dataset.fingerprint})
    tags = {"fingerprint": dataset.fingerprint}
    with warnings.catch_warnings():
        # MLflow's schema hint about integer columns concerns model signatures, not a dataset record, and a
        # local path matches two of its (identical) source types
        warnings.filterwarnings("ignore", message=".*(integer column|interpreted in multiple ways).*")
        if isinstance(dataset.raw_all, pd.DataFrame):
            data = mlflow.data.from_pandas(dataset.raw_all, source=source, targets=dataset.target, name=dataset.name)
            columns = dataset.raw_all.columns
        else:
            X, y = dataset.raw_all
            data = mlflow.data.from_numpy(X, targets=y, source=source, name=dataset.name)
            columns = ()
        # each column takes at least '{"type": "long", "name": "", "required": true}, ' in the schema's text:
        # a table surely too wide is not inferred (seconds for thousands of columns)
        if (
            sum(len(str(c)) + 46 for c in columns) > MAX_DATASET_SCHEMA_SIZE
            or len(data.to_dict().get("schema") or "") > MAX_DATASET_SCHEMA_SIZE
        ):
            vars(data)["schema"] = None  # a cached property, set
            tags["schema"] = f"left out: {len(columns)} columns make it longer than MLflow stores"
        mlflow.log_input(data, context="training", tags=tags)


def log_figure(figure: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    try:
        with artifact_write(path):
            mlflow.log_figure(figure, path)
    finally:
        plt.close(figure)


def log_lr_finder(run_id: str, finder: Any, rule: str) -> None:
    """The range test's curve (step = iteration), suggestion, range, status and its plot and CSV."""
    from hyperflow.core.lr_finder import STATUS_HELP
    from hyperflow.core.plots import lr_finder_curve

    stamp = int(time.time() * 1000)
    metrics = [Metric(names.LR_FIND_LOSS, float(v), stamp, i) for i, v in enumerate(finder.losses_)]
    metrics += [Metric(names.LR_FIND_SMOOTHED_LOSS, float(v), stamp, i) for i, v in enumerate(finder.smoothed_)]
    metrics += [Metric(names.LR_FIND_LR, float(v), stamp, i) for i, v in enumerate(finder.lrs_)]
    metrics += [
        Metric(names.SUGGESTED_LR, finder.suggested_lr_, stamp, 0),
        Metric(names.LR_RANGE_MIN, finder.lr_range_[0], stamp, 0),
        Metric(names.LR_RANGE_MAX, finder.lr_range_[1], stamp, 0),
        Metric(names.LR_FIND_SUGGESTION_SPREAD, finder.suggestion_spread_, stamp, 0),
    ]
    client = MlflowClient()
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, names.LR_FIND_STATUS, finder.status_)
    client.set_tag(run_id, names.LR_FIND_STATUS_HELP, STATUS_HELP[finder.status_])
    figure = lr_finder_curve(
        finder.lrs_,
        finder.losses_,
        finder.smoothed_,
        finder.suggested_lr_,
        finder.lr_range_,
        finder.status_,
        finder.band_,
        rule,
    )
    log_figure(figure, "plots/lr_find.png")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "lr_find.csv")
        finder.to_frame().to_csv(path, index=False)
        with artifact_write("lr_find.csv", run_id):
            client.log_artifact(run_id, str(path))


def log_dict(data: Any, path: str) -> None:
    """A dict as a JSON (or YAML, by suffix) artifact of the active run."""
    with artifact_write(path):
        mlflow.log_dict(data, path)


def log_artifact(local_path: str, folder: str | None = None) -> None:
    """A file as an artifact of the active run (under ``folder``)."""
    with artifact_write(f"{folder}/{os.path.basename(local_path)}" if folder else os.path.basename(local_path)):
        mlflow.log_artifact(local_path, folder)


def log_artifacts(local_dir: str, folder: str | None = None) -> None:
    """A folder's files as artifacts of the active run (under ``folder``)."""
    with artifact_write(f"{folder}/" if folder else "a folder of artifacts"):
        mlflow.log_artifacts(local_dir, folder)
