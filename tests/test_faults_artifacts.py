"""An artifact store that refuses writes: refused before any run when the local folder cannot be written (a file
named ``mlruns`` where MLflow's default folder should be), and a refusal met later in a run (a folder turned into
a file, a full disk) is one line, exit 1, and the run ends FAILED with the reason, for train and lr-find."""

import math
import os
import shutil
import sys
import uuid
from pathlib import Path

import forked
import mlflow
import pytest
from torch import nn

from hyperflow.cli import main
from hyperflow.tracking.artifacts import local_folder

ON_FORWARD: dict = {}  # "action": called once, from inside the run, at the model's first forward pass


class _Hooked(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))

    def forward(self, x):
        action = ON_FORWARD.pop("action", None)
        if action is not None:
            action()
        return self.net(x)


def hooked(input_shape, output_size, **kwargs):
    """``model=test_faults_artifacts:hooked``: a linear model that runs ``ON_FORWARD['action']`` once."""
    return _Hooked(math.prod(input_shape), output_size)


def _active_artifact_folder() -> Path:
    return Path(local_folder(mlflow.active_run().info.artifact_uri))


def _file_in_place_of_run_folder() -> None:
    folder = _active_artifact_folder()
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("a file where the run's artifact folder should be")


def _runs(experiment: str) -> list:
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


COMMANDS = {"train": ["train", "epochs=1"], "lr-find": ["lr-find", "num_iter=30"]}
BEFORE_ANY_RUN = {**COMMANDS, "search": ["search", "max_evals=2", "register=false"]}


@pytest.mark.integration
@pytest.mark.parametrize("command", BEFORE_ANY_RUN)
def test_a_file_named_mlruns_stops_the_command_before_any_run(tmp_path, command):
    """The tester's case: MLflow's default store in a fresh folder, with a file where ./mlruns should be."""
    (tmp_path / "mlruns").write_text("x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = forked.run(
        [sys.executable, "-m", "hyperflow", *BEFORE_ANY_RUN[command], "progress=false"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"the file {tmp_path / 'mlruns'} stands where a folder must be" in lines[0]
    assert "cannot be written" in lines[0] and "--artifact-location" in lines[0]
    store = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert store.search_runs(["0"]) == []  # no run left behind


@pytest.mark.parametrize("command", COMMANDS)
def test_an_artifact_folder_turned_into_a_file_mid_run_fails_the_run_in_one_line(command, experiment, capsys):
    ON_FORWARD["action"] = _file_in_place_of_run_folder
    code = main(
        [*COMMANDS[command], "model=test_faults_artifacts:hooked", f"experiment={experiment}", "progress=false"]
    )
    err = capsys.readouterr().err
    assert "action" not in ON_FORWARD  # the model ran inside the run
    (run,) = _runs(experiment)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert f"run {run.info.run_id} could not save plots/" in lines[0] and "Not a directory" in lines[0]
    assert run.info.status == "FAILED"  # the tracking store answered: a failed run, not a killed one
    assert run.data.tags["hyperflow.failure_reason"] in lines[0]


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A real file system with no space left (a 64 KiB tmpfs, filled)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if forked.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        with open(mount / "filler", "wb", buffering=0) as fh, pytest.raises(OSError, match="No space left"):
            while True:
                fh.write(b"x" * 4096)
        yield mount
    finally:
        forked.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.integration
def test_a_full_disk_mid_run_fails_the_run_in_one_line(full_disk, experiment, capsys):
    def to_full_disk() -> None:
        folder = _active_artifact_folder()
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        target = full_disk / f"run-{uuid.uuid4().hex[:6]}"
        try:
            target.mkdir()
        except OSError:  # no room even for a folder: the folder of the mount itself
            target = full_disk
        folder.symlink_to(target)

    ON_FORWARD["action"] = to_full_disk
    code = main(
        [
            "train",
            "epochs=1",
            "model=test_faults_artifacts:hooked",
            f"experiment={experiment}",
            "progress=false",
            "log_model=false",
        ]
    )
    err = capsys.readouterr().err
    (run,) = _runs(experiment)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and "free disk space" in err
    assert run.info.status == "FAILED" and "No space left" in run.data.tags["hyperflow.failure_reason"]


@pytest.mark.integration
def test_promote_refuses_an_unwritable_artifact_folder_before_moving_anything(tmp_path, client, capsys):
    """gate.json is written after the alias moves: the folder is checked before the promote run exists."""
    good = f"good-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(good)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    assert main(["train", "epochs=1", f"experiment={good}", "progress=false", f"model_name={name}"]) == 0
    (tmp_path / "blocked").write_text("x")
    blocked = f"blocked-{uuid.uuid4().hex[:8]}"
    mlflow.create_experiment(blocked, artifact_location=str(tmp_path / "blocked" / "artifacts"))
    capsys.readouterr()
    code = main(["promote", f"model_name={name}", "version=1", "allow_first=true", f"experiment={blocked}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"the file {tmp_path / 'blocked'} stands where a folder must be" in err
    assert _runs(blocked) == [] and "champion" not in client.get_registered_model(name).aliases


def test_messages_show_the_store_uri_as_configured(tracking_uri, capsys):
    """An absolute sqlite path keeps its four slashes (it was shown as sqlite://tmp/...); credentials are cut."""
    from hyperflow.tracking.experiments import tracking_uri as shown_tracking_uri
    from hyperflow.tracking.registry import store_uri

    assert tracking_uri.startswith("sqlite:////")
    assert main(["promote", "model_name=nosuch"]) == 2
    err = capsys.readouterr().err
    assert f"no registered model of that name in {tracking_uri} " in err, err
    assert shown_tracking_uri() == tracking_uri
    for uri in (
        "sqlite:////abs/mlflow.db",
        "sqlite:///mlflow.db",
        "file:///tmp/mlruns",
        "databricks",
        "http://127.0.0.1:5000",
    ):
        assert store_uri(uri) == uri
    assert store_uri("http://admin:s3cret@127.0.0.1:5000/") == "http://127.0.0.1:5000/"
    assert store_uri("postgresql+psycopg2://u:p%40ss@db:5432/mlflow") == "postgresql+psycopg2://db:5432/mlflow"
