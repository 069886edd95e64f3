"""A client of a new sqlite tracking store for tests that start hyperflow in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import forked
import mlflow
from mlflow.entities import Run
from polling import wait_for

from hyperflow.tracking import new_store


def ready_store(uri: str) -> mlflow.MlflowClient:
    """A client of the store at ``uri`` whose tables exist before a subprocess opens it: the test polling
    a store while the subprocess creates it would run MLflow's schema migrations twice on one file."""
    new_store.make_if_missing(uri)  # a copy of the empty store, as a command makes it (MLflow's migrations: ~0.7 CPU-s)
    client = mlflow.MlflowClient(uri)
    client.search_experiments()
    return client


def search_process(args: list[str], uri: str, cwd: Path, **env: str) -> subprocess.Popen:
    """``python -m hyperflow search *args`` as a new process, logging to the store at ``uri`` (none of this
    process's MLflow run or experiment inherited), ``env`` added to its environment, its output discarded."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    return forked.Popen(
        [sys.executable, "-m", "hyperflow", "search", *args],
        env={**inherited, "MLFLOW_TRACKING_URI": uri, **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_once(
    proc: subprocess.Popen, client: mlflow.MlflowClient, experiment: str, ready: Callable[[list[Run]], bool], what: str
) -> list[Run]:
    """``kill -9`` the search ``proc`` once the runs of ``experiment`` are ``ready`` (``what`` names that moment in
    a timeout's message); those runs. The search must still run until then."""

    def runs_when_ready() -> list[Run] | None:
        assert proc.poll() is None, "the search ended before it could be killed"
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        return runs if ready(runs) else None

    try:
        return wait_for(runs_when_ready, what, 120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
