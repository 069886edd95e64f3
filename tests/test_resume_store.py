"""The tracking store failing mid-search: a real `mlflow server` killed while trials run (retries off). One line
names the store and the error and prints the resume command; no finished trial is marked FAILED; once the
server is back, the resume keeps what reached it and finishes the search."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import forked
import mlflow
import pytest
from polling import wait_for
from services import SqliteServer

from hyperflow.cli import main


@contextmanager
def server(home: Path) -> Iterator[SqliteServer]:
    s = SqliteServer(home).start().ready()
    try:
        yield s
    finally:
        s.kill()


@pytest.mark.integration
def test_a_server_gone_mid_search_gives_one_line_and_the_resume_finishes(tmp_path, tracking_uri):
    with server(tmp_path) as srv:
        client = mlflow.MlflowClient(srv.uri)
        client.create_experiment("gone")  # so that the search prints nothing else (no "creating" note)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
        env.update({"MLFLOW_TRACKING_URI": srv.uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
        args = [
            "strategy=random",
            "max_evals=4",
            "pruner=none",
            "epochs=20",
            "width=16",
            "progress=false",
            "experiment=gone",
            "model_name=gone-model",
        ]
        proc = forked.Popen(
            [sys.executable, "-m", "hyperflow", "search", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        exp = client.get_experiment_by_name("gone").experiment_id

        def two_finished():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            runs = client.search_runs([exp])
            return sum(r.info.status == "FINISHED" for r in runs if r.data.tags["hyperflow.role"] == "trial") >= 2

        try:
            wait_for(two_finished, "two finished trials", 180)
        finally:
            srv.kill()
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-3000:]
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err[-3000:]
        assert srv.uri in lines[0] and "hyperflow search resume=" in lines[0] and "Traceback" not in err
        parent = lines[0].split("resume=")[-1].strip()

        srv.start().ready()
        finished_before = {
            r.info.run_id
            for r in client.search_runs([exp])
            if r.data.tags.get("hyperflow.trial_status") in ("ok", "pruned")
        }
        assert len(finished_before) >= 2
        mlflow.set_tracking_uri(srv.uri)
        try:
            assert main(["search", f"resume={parent}"]) == 0
        finally:
            mlflow.set_tracking_uri(tracking_uri)
        runs = client.search_runs([exp], max_results=200)
        assert not [r for r in runs if r.info.status == "RUNNING"]
        done = [r for r in runs if r.data.tags.get("hyperflow.trial_status")]
        numbers = [int(r.data.tags["hyperflow.trial_number"]) for r in done]
        assert len(numbers) == len(set(numbers)) == 4  # trials at once: a number cut short is not used again
        assert finished_before <= {r.info.run_id for r in done}
        assert all(r.info.status == "FINISHED" for r in done if r.data.tags["hyperflow.trial_status"] != "failed")
        assert client.get_run(parent).info.status == "FINISHED"
        assert len(client.search_model_versions("name = 'gone-model'")) == 1


@pytest.mark.integration
def test_a_read_only_sqlite_store_gives_one_line_and_touches_nothing(tmp_path, tracking_uri, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\nepochs: 1\n")
    mlflow.set_tracking_uri(uri)
    try:
        assert (
            main(
                [
                    "search",
                    f"space={space}",
                    "strategy=random",
                    "max_evals=2",
                    "register=false",
                    "progress=false",
                    "experiment=ro",
                ]
            )
            == 0
        )
        client = mlflow.MlflowClient(uri)
        parent = next(
            r
            for r in client.search_runs([client.get_experiment_by_name("ro").experiment_id])
            if r.data.tags["hyperflow.role"] == "search"
        )
        mlflow.set_tracking_uri(f"sqlite:///file:{tmp_path}/mlflow.db?mode=ro&uri=true")  # reads work, writes fail
        capsys.readouterr()
        assert main(["search", f"resume={parent.info.run_id}", "max_evals=3"]) == 1
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "readonly database" in err and f"resume={parent.info.run_id}" in err, err
    after = client.get_run(parent.info.run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == parent.info.end_time
