"""The shared tracking server (deploy/server.py): PostgreSQL, proxied artifacts, basic auth, restarts.
Real services on loopback ports (tests/services.py); searches run as real ``hyperflow`` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import forked
import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from services import SCRIPT, mlflow_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration  # every test here starts processes

TINY = ["data=digits", "width=32", "progress=false", "flush_secs=5"]


def search(server, user: str, folder: Path, epochs: int, *settings: str, **popen) -> subprocess.Popen:
    space = folder / f"space-{epochs}-{os.urandom(4).hex()}.yaml"  # searches started at once each read their own
    space.write_text(f"lr: {{type: loguniform, low: 1.0e-3, high: 1.0e-2}}\nepochs: {epochs}\n")
    return forked.Popen(
        [sys.executable, "-m", "hyperflow", "search", *TINY, f"space={space}", *settings],
        env={**server.env(user), **popen.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def runs_of(client: MlflowClient, experiment: str) -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = [r for r in runs if r.data.tags.get("hyperflow.role") == "search"]
    assert len(parent) == 1, [r.data.tags.get("hyperflow.role") for r in runs]
    return parent[0], [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]


def assert_complete(client: MlflowClient, experiment: str, trials: int, epochs: int) -> list[mlflow.entities.Run]:
    """Parent and every child FINISHED and linked, every param of the search space, every epoch's metrics."""
    parent, children = runs_of(client, experiment)
    assert parent.info.status == "FINISHED"
    assert len(children) == trials
    assert sorted(int(c.data.params["trial_number"]) for c in children) == list(range(trials))
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["hyperflow.trial_status"] == "ok"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(child.data.params) == {"lr", "epochs", "seed", "trial_number"}  # the sampled point
        for key in ("train_loss", "val_loss"):
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == list(range(1, epochs + 1)), (key, steps)
        assert "best_val_loss" in child.data.metrics
    steps = sorted(m.step for m in client.get_metric_history(parent.info.run_id, "best_val_loss"))
    assert steps == list(range(trials))
    assert parent.data.tags["hyperflow.best_run_id"] in {c.info.run_id for c in children}
    return [parent, *children]


@pytest.fixture(scope="module")
def four_searches(mlflow_server, tmp_path_factory):
    """Four searches at once, as one searcher, against the same server."""
    started = time.monotonic()
    user, _ = mlflow_server.create_user(role="searcher")
    tag = os.urandom(3).hex()
    names = [f"four-{tag}-{i}" for i in range(4)]
    folder = tmp_path_factory.mktemp("four")
    procs = [
        search(
            mlflow_server,
            user,
            folder,
            2,
            "max_evals=3",
            "strategy=random",
            f"seed={i}",
            f"experiment={name}",
            f"model_name={name}",
        )
        for i, name in enumerate(names)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    print(f"four searches at once: {time.monotonic() - started:.0f} s")
    return names


def test_four_searches_at_once_lose_nothing(mlflow_server, four_searches):
    with mlflow_server.as_user():
        client = MlflowClient()
        for name in four_searches:
            runs = assert_complete(client, name, trials=3, epochs=2)
            version = client.get_model_version_by_alias(name, "challenger")
            assert version.tags["search_run_id"] == runs[0].info.run_id
            assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} >= {"trials.csv", "best_params.json"}
            assert client.get_experiment_by_name(name).artifact_location.startswith("mlflow-artifacts:")


def test_no_password_in_any_param_tag_or_artifact(mlflow_server, four_searches, tmp_path):
    secrets = [p.encode() for p in mlflow_server.passwords.values()]
    with mlflow_server.as_user():
        client = MlflowClient()
        for name in four_searches:
            parent, children = runs_of(client, name)
            for run in (parent, *children):
                texts = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags]
                assert not [t for t in texts if any(s.decode() in t for s in secrets)]
                folder = Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id)
                    )
                )
                files = [f for f in folder.rglob("*") if f.is_file()]
                assert run is not parent or files
                assert not [f for f in files if any(s in f.read_bytes() for s in secrets)]
            for version in client.search_model_versions(f"name = '{name}'"):
                assert not [v for v in version.tags.values() if any(s.decode() in v for s in secrets)]


def test_requests_without_valid_credentials_are_refused(mlflow_server):
    url = f"{mlflow_server.uri}/api/2.0/mlflow/experiments/search"
    assert requests.post(url, json={"max_results": 1}, timeout=30).status_code == 401
    assert (
        requests.post(url, json={"max_results": 1}, auth=("admin", "not-the-password"), timeout=30).status_code == 401
    )
    assert requests.post(url, json={"max_results": 1}, auth=mlflow_server.admin, timeout=30).status_code == 200


def test_a_reader_reads_but_cannot_move_an_alias(mlflow_server, four_searches):
    reader, _ = mlflow_server.create_user(role="reader")
    searcher, _ = mlflow_server.create_user(role="searcher")
    name = four_searches[0]
    with mlflow_server.as_user(reader):
        client = MlflowClient()
        version = client.get_model_version_by_alias(name, "challenger")
        assert client.get_run(version.tags["search_run_id"]).info.status == "FINISHED"
        with pytest.raises(MlflowException, match=r"403|PERMISSION_DENIED|Permission denied"):
            client.set_registered_model_alias(name, "champion", version.version)
        with pytest.raises(MlflowException, match=r"403|PERMISSION_DENIED|Permission denied"):
            client.create_run(client.get_experiment_by_name(name).experiment_id)
    with mlflow_server.as_user(searcher):  # another searcher may promote what the first one registered
        client = MlflowClient()
        client.set_registered_model_alias(name, "champion", version.version)
        assert client.get_model_version_by_alias(name, "champion").version == version.version


def test_the_server_restarts_mid_search_and_nothing_is_lost(mlflow_server, tmp_path):
    user, _ = mlflow_server.create_user(role="searcher")
    experiment = f"restart-{os.urandom(3).hex()}"
    # retries at 0, 2, 6, 14, 30, 62, 126 s: an outage of up to ~2 min is ridden out
    retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    proc = search(
        mlflow_server,
        user,
        tmp_path,
        3,
        "max_evals=4",
        "strategy=random",
        "pruner=none",
        "register=false",
        f"experiment={experiment}",
        env=retries,
    )
    with mlflow_server.as_user():
        client = MlflowClient()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if any(r.data.tags.get("hyperflow.role") == "trial" and r.info.status == "FINISHED" for r in runs):
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the search ended before the server went down"
        down = time.monotonic()
        mlflow_server.stop()
        assert mlflow_server.proc.returncode == 0 and "stopped" in mlflow_server.log.read_text()  # cleanly
        assert proc.poll() is None, "the search did not survive the server going down"
        mlflow_server.start()
        outage = time.monotonic() - down
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
        assert_complete(client, experiment, trials=4, epochs=3)
    print(f"search rode out a {outage:.0f} s outage")


def test_the_script_refuses_bad_input_in_one_line(mlflow_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    cases = [
        ({}, ["--port", "1"], "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, [], "too short"),
        (
            {"MLFLOW_AUTH_ADMIN_PASSWORD": "long-enough-password"},
            ["--port", str(mlflow_server.port)],
            f"port 127.0.0.1:{mlflow_server.port} is not free",
        ),
    ]
    for extra, args, fragment in cases:
        done = forked.run(
            [sys.executable, str(SCRIPT), "serve", "--home", str(tmp_path / "home"), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        err = done.stderr.strip()
        assert done.returncode == 2 and fragment in err and "\n" not in err, err
    assert not (tmp_path / "home").exists()  # nothing half-made
