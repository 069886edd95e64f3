"""Cold start: a command imports only what it uses when it uses it, and a fast exit still leaves every run
ended and every value in the store. Behaviour only; the timings are bench/cold_start.py's."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import forked
import mlflow
import pytest

from hyperflow.runtime import startup

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "mlflow", "sklearn", "matplotlib", "torch._dynamo", "torch._inductor")


def loaded_after(code: str, cwd: Path | None = None) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=cwd, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.integration
def test_importing_the_cli_imports_no_heavy_library():
    assert loaded_after("import hyperflow.cli") == []


@pytest.mark.integration
def test_parsing_and_checking_a_train_command_imports_no_heavy_library(tmp_path):
    table = tmp_path / "houses.csv"
    table.write_text("rooms,price\n" + "".join(f"{i % 5},{100 + i}\n" for i in range(50)))
    code = (
        "from hyperflow.cli.checks import check_inputs\nfrom hyperflow.cli.parsing import parse\n"
        f"for argv in (['train', 'data=digits', 'epochs=1'], ['search', 'data={table}', 'target=price']):\n"
        "    check_inputs(parse(argv))"
    )
    assert loaded_after(code) == []


@pytest.mark.integration
def test_a_bad_data_setting_is_reported_before_heavy_imports(tmp_path):
    code = f"from hyperflow.cli import main\nassert main(['train', 'data={tmp_path / 'missing.csv'}']) == 2"
    assert loaded_after(code) == []


@pytest.mark.integration
def test_setting_torch_up_does_not_import_dynamo():
    """Seeds, threads and the determinism flag (left as it is unless it changes: torch's setter imports
    torch._inductor's config, and with it torch._dynamo). torch.optim's optimizers import torch._dynamo
    themselves in torch 2.x (Optimizer.add_param_group and step are wrapped by torch._disable_dynamo)."""
    code = (
        "from hyperflow.config import build_config\nfrom hyperflow.core.assembly import configure_torch\n"
        "configure_torch(build_config({'seed': '3'}))"
    )
    assert loaded_after(code) == ["torch"]


def test_determinism_is_switched_on_and_off_again():
    import torch

    from hyperflow.core.trainer import seed_everything

    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.integration
def test_a_command_process_ends_its_run_finished_with_everything_logged(experiment, client):
    """A whole `hyperflow train` process (fast exit included) on the session's store, then its run read back."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "train",
            "data=digits",
            "epochs=2",
            "progress=false",
            f"experiment={experiment}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert {"test_accuracy", "best_val_loss", "train_seconds"} <= set(run.data.metrics)
    assert run.data.params["epochs"] == "2"
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.metadata.signature is not None


@pytest.fixture
def collector():
    """The collector's state, restored after the test whatever it does."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    startup.restore()
    if not frozen:
        gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_startup_phase_pauses_collection_then_freezes_what_was_imported(collector):
    gc.enable()
    startup.begin()
    assert not gc.isenabled()
    startup.end()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    startup.restore()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_search_whose_process_never_trains_still_ends_its_start_up(collector, tmp_path, experiment, client):
    """E.g. a search of one's own function (or one whose trials run in worker processes): the trials run with
    the garbage collector on, not in the command's start-up phase."""
    from hyperflow.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("x: {type: uniform, low: 0.0, high: 1.0}\n")
    gc.enable()
    args = ["search", "objective=user_objectives:collector_on", f"space={space}", "max_evals=1", "parallelism=1"]
    assert main([*args, "progress=false", f"experiment={experiment}"]) == 0
    (trial,) = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`hyperflow.role` = 'trial'"
    )
    assert trial.data.metrics["collector_on"] == 1.0


def test_the_python_api_searches_as_a_command_does_and_gives_the_collector_back(collector, experiment, client):
    """hyperflow.search: the heap as it was when the trials started is frozen while they run, the collector on;
    when it returns, the collector is as the caller had it."""
    import hyperflow

    gc.enable()
    space = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    result = hyperflow.search("user_objectives:collector_on", space=space, max_evals=1, parallelism=1)
    trial = client.get_run(result.trials[0].run_id)
    assert trial.data.metrics["collector_on"] == 1.0 and trial.data.metrics["frozen"] > 100_000
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_library_callers_keep_the_default_collector(collector):
    gc.enable()
    startup.end()  # e.g. Trainer.fit called from Python, without the CLI
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_cli_gives_the_collector_back_when_a_command_returns(collector, tmp_path):
    from hyperflow.cli import main

    gc.enable()
    assert main(["train", f"data={tmp_path / 'missing.csv'}"]) == 2
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_new_sqlite_store_is_a_copy_of_the_cached_empty_one(tmp_path, monkeypatch):
    from hyperflow.tracking import new_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'sub' / 'second.db'}"
    new_store.make_if_missing(first)  # MLflow makes this one; its empty schema is kept
    template = new_store.template_path()
    with closing(sqlite3.connect(template)) as db:
        assert db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)
    new_store.make_if_missing(second)
    client = mlflow.MlflowClient(tracking_uri=second)
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location != ""
    run = client.create_run(client.create_experiment("copied"))
    client.log_metric(run.info.run_id, "m", 1.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.5}
    assert [e.name for e in mlflow.MlflowClient(tracking_uri=first).search_experiments()] == ["Default"]


def test_existing_files_and_other_stores_are_left_to_mlflow(tmp_path, monkeypatch):
    from hyperflow.tracking import new_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"not touched")
    for uri in (
        f"sqlite:///{existing}",
        "sqlite:///:memory:",
        "sqlite://",
        "http://127.0.0.1:5000",
        f"file://{tmp_path}/mlruns",
    ):
        new_store.make_if_missing(uri)
    assert existing.read_bytes() == b"not touched"
    assert not (tmp_path / "cache").exists()
    assert new_store.sqlite_path("sqlite:///rel/m.db") == Path("rel/m.db")
    assert new_store.sqlite_path("sqlite:////abs/m.db") == Path("/abs/m.db")


@pytest.mark.integration
def test_commands_started_together_in_a_new_folder_share_one_whole_store(tmp_path):
    """No cached store yet and one new store file for three processes released together: none sees a store
    half made (MLflow migrating one file twice fails with "duplicate column name")."""
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [
        forked.Popen(  # forked from the tests' warm template: the imports are not what is tested here
            [sys.executable, str(Path(__file__).with_name("make_and_use_store.py")), uri, f"e{i}"],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(3)
    ]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.communicate()[1][-2000:]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    names = {e.name for e in mlflow.MlflowClient(uri).search_experiments()}
    assert names == {"Default", "e0", "e1", "e2"}
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
