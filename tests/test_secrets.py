"""A tracking URI may carry a user name and password (``http://user:pw@host``; MLflow accepts it): the password
never reaches the screen, a run's tags, params or artifacts, a model version, or a log record. One function
cuts credentials out of text (hyperflow.errors.without_credentials); every URI shown and every library
message hyperflow repeats goes through it."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path

import forked
import mlflow
import pytest
from services import free_port, mlflow_server  # noqa: F401  (fixture)

from hyperflow import tracking
from hyperflow.errors import RegistryError, one_line, whole_message, without_credentials
from hyperflow.runtime import library_logs
from hyperflow.tracking import registry
from hyperflow.workflows.search_outcome import search_store_failure

PASSWORD = "s3cret-Pw-23"


@pytest.mark.parametrize(
    "text, shown",
    [
        (f"http://alice:{PASSWORD}@127.0.0.1:5000", "http://127.0.0.1:5000"),
        (
            f"API request to https://alice:{PASSWORD}@host.example/api/2.0/x failed",
            "API request to https://host.example/api/2.0/x failed",
        ),
        (f"postgresql+psycopg2://u:p@ss{PASSWORD}@db:5432/mlflow", "postgresql+psycopg2://db:5432/mlflow"),
        (f"'http://token{PASSWORD}@h/x' and http://h/y?a=b@c", "'http://h/x' and http://h/y?a=b@c"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("file:///data@2026/x.csv", "file:///data@2026/x.csv"),
        ("mail alice@example.org", "mail alice@example.org"),
    ],
)
def test_credentials_are_cut_out_of_every_url_in_a_text(text, shown):
    assert without_credentials(text) == shown


@pytest.fixture
def unreachable(monkeypatch, tracking_uri):
    """This process tracks to a server with a password in its URI where nothing listens."""
    port = free_port()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(f"http://alice:{PASSWORD}@127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}"
    mlflow.set_tracking_uri(tracking_uri)


def test_the_lines_for_a_failed_store_show_no_password(unreachable):
    assert tracking.tracking_uri() == unreachable
    with pytest.raises(Exception) as failed:
        mlflow.MlflowClient().get_experiment("0")
    assert PASSWORD in str(failed.value)  # MLflow's own message quotes the URI as given
    for line in (
        search_store_failure(failed.value, "", None),
        search_store_failure(failed.value, "", "abc"),
        tracking.store_error_text(failed.value),
        one_line(failed.value),
        whole_message(failed.value),
    ):
        assert PASSWORD not in line and "alice" not in line, line
    assert unreachable in search_store_failure(failed.value, "", None)
    with pytest.raises(RegistryError) as refused:
        registry.registered_model(mlflow.MlflowClient(), "m")
    assert PASSWORD not in str(refused.value) and f"the model registry {unreachable} failed" in str(refused.value)


def _emitted(record_from: str, verbose: str, monkeypatch) -> str:
    monkeypatch.setenv(library_logs.VERBOSE, verbose)
    library_logs.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(record_from)
    logger.addHandler(handler)
    try:
        try:
            raise ConnectionError(f"API request to http://alice:{PASSWORD}@host/api failed")
        except ConnectionError:
            logger.error("request failed:\nhttp://alice:%s@host/api\nsecond line", PASSWORD, exc_info=True)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_librarys_log_record_is_one_line_without_password(monkeypatch):
    text = _emitted("mlflow.test_secrets", "", monkeypatch)
    assert text == "ERROR mlflow.test_secrets: request failed:\n", text


def test_verbose_shows_the_traceback_still_without_password(monkeypatch):
    text = _emitted("mlflow.test_secrets", "1", monkeypatch)
    assert "Traceback" in text and "second line" in text and "http://host/api" in text
    assert PASSWORD not in text


@pytest.mark.integration
def test_a_password_in_the_uri_reaches_no_output_run_or_version(mlflow_server, tmp_path):
    """Against a real server with basic auth, the credentials given in the URI alone (MLflow sends them)."""
    user, password = mlflow_server.create_user(role="searcher", password=PASSWORD + "-srv")
    uri = mlflow_server.uri.replace("://", f"://{user}:{password}@")
    experiment, model = f"secrets-{tmp_path.name[-6:]}", f"secrets-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYPERFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment)
    output = ""
    for args in (
        ["train", "data=digits", "epochs=1", f"model_name={model}"],
        ["promote", f"model_name={model}", "version=1", "allow_first=true"],
        ["search", "data=digits", "max_evals=2", "epochs=1", f"model_name={model}"],
    ):
        proc = forked.run(
            [sys.executable, "-m", "hyperflow", *args, *(["progress=false"] * (args[0] != "promote"))],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        output += proc.stdout + proc.stderr
    assert password not in output and mlflow_server.uri in output  # the URI is shown, without credentials
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    assert {r.data.tags["hyperflow.role"] for r in runs} == {"train", "promote", "search", "trial"}
    for run in runs:
        assert password not in repr(run.data.tags) + repr(run.data.params) + repr(run.info), run.info.run_name
        folder = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, tracking_uri=uri, dst_path=str(tmp_path / run.info.run_id)
            )
        )
        for path in (p for p in folder.rglob("*") if p.is_file()):
            assert password.encode() not in path.read_bytes(), path
    versions = client.search_model_versions(f"name = '{model}'")
    assert len(versions) == 2
    assert password not in repr(versions) + repr(client.get_registered_model(model))
