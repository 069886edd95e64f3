"""What a worker process or a Spark executor needs to log to the driver's store: the tracking URI and the
driver's MLFLOW_* settings, handed over in memory and applied there, and the store's connection opened early.
"""

from __future__ import annotations

import os

import mlflow


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
