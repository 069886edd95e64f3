"""Shared fixtures: one real sqlite MLflow store per test session (schema creation costs ~3 s)."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import mlflow
import pytest

from hyperflow.errors import raise_terminated


@pytest.fixture(scope="session", autouse=True)
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    mlflow.set_tracking_uri(uri)
    previous = os.getcwd()
    os.chdir(root)  # MLflow's default artifact root (./mlruns) lands in the temp dir, not the repo
    yield uri
    os.chdir(previous)


@pytest.fixture(autouse=True)
def no_inherited_experiment_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: without the MLFLOW_EXPERIMENT_ID that ``mlflow.set_experiment``
    in an earlier test left in this process's environment (a command refuses an id its store lacks)."""
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


@pytest.fixture
def experiment() -> str:
    """A fresh experiment per test, so runs of different tests never mix."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(name)
    return name


@pytest.fixture
def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


@pytest.fixture
def cli_signals():
    """Ctrl-C and SIGTERM handled as the command line has them (KeyboardInterrupt, Terminated), whatever the
    test runner inherited: one started in the background (nohup, `&`) has Ctrl-C ignored."""
    assert threading.current_thread() is threading.main_thread()  # signals are handled in the main thread
    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, raise_terminated)
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])
