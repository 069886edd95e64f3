"""A client of a new sqlite tracking store for tests that start hyperflow in a subprocess."""

from __future__ import annotations

import mlflow


def ready_store(uri: str) -> mlflow.MlflowClient:
    """A client of the store at ``uri`` whose tables exist before a subprocess opens it: the test polling
    a store while the subprocess creates it would run MLflow's schema migrations twice on one file."""
    client = mlflow.MlflowClient(uri)
    client.search_experiments()
    return client
