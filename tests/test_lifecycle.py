"""Real processes: a SIGTERM ends the run KILLED; the helpers that serve a logged model over HTTP (a real
`mlflow models serve`), used by test_predict (the champion by alias), test_tables and test_doc_serving."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import forked
import pytest
from polling import wait_for
from services import free_port
from stores import ready_store


@pytest.mark.integration
def test_sigterm_ends_the_run_killed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(var, None)
    client = ready_store(uri)
    proc = forked.Popen(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "train",
            "epochs=100000",
            "log_model=false",
            "progress=false",
            "experiment=term",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def running():
            if proc.poll() is not None:
                raise AssertionError(f"hyperflow train exited early: {proc.stderr.read()[-2000:]}")
            exp = client.get_experiment_by_name("term")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            return (
                runs and runs[0].info.status == "RUNNING" and client.get_metric_history(runs[0].info.run_id, "val_loss")
            )

        wait_for(running, "a RUNNING run with metrics", 120)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    run = client.search_runs([client.get_experiment_by_name("term").experiment_id])[0]
    assert run.info.status == "KILLED"


@contextmanager
def serve_model(model_uri: str, tracking_uri: str, timeout: float = 120) -> Iterator[int]:
    """A real `mlflow models serve` process on 127.0.0.1; yields its port once it answers /ping."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # the server execs uvicorn from PATH: the interpreter's own bin directory, venv activated or not
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ping():
            if server.poll() is not None:  # it exited: say why instead of waiting for the deadline
                raise AssertionError(f"the model server exited: {server.stderr.read()[-3000:]}")
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).status == 200
            except OSError:
                return False

        wait_for(ping, "the model server", timeout)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def invoke(port: int, records: list[dict]) -> list[dict]:
    """POST raw rows to a model server's /invocations; its predictions."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
