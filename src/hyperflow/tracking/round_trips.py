"""Fewer sequential round trips while a model is logged to a tracking server.

``mlflow.pyfunc.log_model`` reads every metric history of its run one request after another (to link the
step's metrics to the logged model) and uploads the model's files one request after another (the bundled
package is ~45 files). Against a server each request is a round trip (~10–100 ms). Inside
:func:`concurrent_round_trips` the histories are read at once, on threads, before MLflow asks for them and
handed to it from memory, and a proxied artifact store (``mlflow-artifacts:``, ``http(s)``) receives the
files several at a time. The same requests go out and the same data and files arrive; only the waiting
overlaps. With a local store (sqlite, files) nothing changes.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import relative_path_to_artifact_path

AT_ONCE = 8  # requests in flight at once


def _remote() -> bool:
    return mlflow.get_tracking_uri().startswith(("http://", "https://"))


@contextmanager
def concurrent_round_trips(run_id: str | None) -> Iterator[None]:
    """For the duration: run ``run_id``'s metric histories prefetched concurrently, artifact uploads to a
    proxied store sent ``AT_ONCE`` at a time. A no-op with a local tracking store."""
    if not _remote():
        yield
        return
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="hyperflow-round-trips") as pool:
        histories = _prefetched_histories(run_id, pool) if run_id else {}
        read_history, upload_folder = MlflowClient.get_metric_history, HttpArtifactRepository.log_artifacts

        def get_metric_history(self: MlflowClient, run: str, key: str) -> Any:
            future = histories.pop((run, key), None)  # served once: a later read asks the store again
            return future.result() if future is not None else read_history(self, run, key)

        def log_artifacts(self: HttpArtifactRepository, local_dir: str, artifact_path: str | None = None) -> None:
            uploads = [
                pool.submit(self.log_artifact, path, folder)
                for path, folder in _files(os.path.abspath(local_dir), artifact_path)
            ]
            for upload in uploads:
                upload.result()  # raises what the upload raised

        MlflowClient.get_metric_history = get_metric_history  # type: ignore[method-assign]
        HttpArtifactRepository.log_artifacts = log_artifacts  # type: ignore[method-assign]
        try:
            yield
        finally:
            MlflowClient.get_metric_history = read_history  # type: ignore[method-assign]
            HttpArtifactRepository.log_artifacts = upload_folder  # type: ignore[method-assign]


def _prefetched_histories(run_id: str, pool: ThreadPoolExecutor) -> dict[tuple[str, str], Any]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {(run_id, key): pool.submit(client.get_metric_history, run_id, key) for key in keys}


def _files(local_dir: str, artifact_path: str | None) -> Iterator[tuple[str, str | None]]:
    """(file, artifact folder) pairs, as ``HttpArtifactRepository.log_artifacts`` walks them."""
    for root, _, filenames in os.walk(local_dir):
        if root == local_dir:
            folder = artifact_path
        else:
            rel_path = relative_path_to_artifact_path(os.path.relpath(root, local_dir))
            folder = posixpath.join(artifact_path, rel_path) if artifact_path else rel_path
        for name in filenames:
            yield os.path.join(root, name), folder
