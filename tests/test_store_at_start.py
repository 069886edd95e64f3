"""The tracking store a command is pointed at is checked at its start, as real processes see it: a scheme
MLflow has no store for, a sqlite file that is a folder or in a folder that does not exist, a schema revision
this MLflow does not know or has moved past, an ``MLFLOW_EXPERIMENT_ID`` naming no experiment or a deleted
one; and promote, retrain and predict (which only read) on a store that does not exist yet. Each is one line,
exit 2, in seconds, and nothing is created. The libraries' INFO records and MLflow's "Found extra inputs"
stay out of sight."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import forked
import mlflow
import pandas as pd
import pytest

from hyperflow.cli import main

pytestmark = pytest.mark.integration  # every test here starts processes

LIMIT_S = 60  # a refusal at start takes seconds; a sqlite path that is a folder took ~115 s (MLflow retried)
COMMANDS = {
    "train": ["train", "data=wine", "epochs=1", "progress=false"],
    "search": ["search", "data=wine", "max_evals=2", "epochs=1", "register=false", "progress=false"],
    "promote": ["promote", "model_name=m", "allow_first=true"],
    "retrain": ["retrain", "model_name=m", "epochs=1"],
    "predict": ["predict", "model=models:/m/1", "data=rows.csv", "out=out.csv"],
}


def hyperflow(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYPERFLOW_"))}
    return forked.run(
        [sys.executable, "-m", "hyperflow", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
    )


def refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The one line of a refusal, checked: exit 2, nothing else on stderr, the words in it."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def made_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a sqlite store made by a real command (one LR range test)."""
    folder = tmp_path_factory.mktemp("made")
    proc = hyperflow(
        ["lr-find", "data=wine", "num_iter=10", "progress=false"],
        folder,
        MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


@pytest.mark.parametrize("command", ["train", "promote", "predict"])
def test_a_scheme_mlflow_has_no_store_for_is_one_line(command, tmp_path):
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI="foo://bar/baz")
    refused(proc, "'foo'", "sqlite:///", "http(s)://", "postgresql://", "databricks")


@pytest.mark.parametrize("uri", ["databricks", "databricks://no-such-profile"])
def test_a_databricks_uri_without_credentials_is_one_line(uri, tmp_path):
    """No DATABRICKS_* variables and no ~/.databrickscfg: MLflow fails at the first request with a traceback."""
    proc = hyperflow(
        COMMANDS["train"],
        tmp_path,
        MLFLOW_TRACKING_URI=uri,
        HOME=str(tmp_path),
        **{k: "" for k in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE")},
    )
    refused(proc, f"'{uri}'", "no Databricks credentials", "DATABRICKS_HOST")


def test_a_registry_uri_or_a_database_driver_that_cannot_be_used_is_one_line(tmp_path):
    refused(
        hyperflow(
            COMMANDS["train"],
            tmp_path,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db",
            MLFLOW_REGISTRY_URI="foo://x",
        ),
        "MLFLOW_REGISTRY_URI 'foo://x'",
        "model registry",
        "'foo'",
    )
    refused(
        hyperflow(COMMANDS["promote"], tmp_path, MLFLOW_TRACKING_URI="mysql+nosuchdriver://u:pw@127.0.0.1:1/d"),
        "no driver 'mysql+nosuchdriver'",
    )
    refused(
        hyperflow(COMMANDS["train"], tmp_path, MLFLOW_TRACKING_URI="postgresql+pg8000://u:pw@127.0.0.1:1/d"),
        "database driver is not installed",
        "'pg8000'",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("allow", ["", "true"])
def test_a_uri_without_a_scheme_is_a_file_store_refused_or_not_made(allow, tmp_path):
    """``http//host`` (a missing colon) is a folder to MLflow: its file store, which it uses only when allowed,
    and then, as a sqlite file, only in a folder that exists."""
    proc = hyperflow(
        COMMANDS["train"],
        tmp_path,
        MLFLOW_TRACKING_URI="http//localhost:5000",
        **({"MLFLOW_ALLOW_FILE_STORE": allow} if allow else {}),
    )
    refused(proc, *(["does not exist"] if allow else ["MLFLOW_ALLOW_FILE_STORE=true", "sqlite:///"]))
    assert not (tmp_path / "http").exists()


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_a_sqlite_path_that_is_a_folder_is_refused_at_once(command, tmp_path):
    (tmp_path / "d.db").mkdir()
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/d.db")
    refused(proc, "is a folder", f"sqlite:///{tmp_path}/d.db/mlflow.db")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_sqlite_store_in_a_folder_that_does_not_exist_is_refused_and_nothing_is_made(command, tmp_path):
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/no/such/mlflow.db")
    refused(proc, f"'{tmp_path}/no/such' does not exist")
    if command == "train":  # a file where the folder should be
        (tmp_path / "f.txt").touch()
        proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/f.txt/mlflow.db")
        refused(proc, f"'{tmp_path}/f.txt' is not a folder")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", ["promote", "retrain", "predict"])
def test_a_reading_command_on_a_store_that_does_not_exist_makes_none(command, tmp_path):
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    refused(proc, "no tracking store", str(tmp_path / "mlflow.db"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "revision, words",
    [
        ("ffffffffffff", ("ffffffffffff", "newer MLflow")),
        ("0584bdc529eb", ("older schema", "mlflow db upgrade sqlite:///")),
    ],
)
@pytest.mark.parametrize("command", ["train", "promote"])
def test_a_schema_revision_this_mlflow_cannot_use_says_what_to_do(command, revision, words, made_store, tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes((made_store / "mlflow.db").read_bytes())
    with closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        con.commit()
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    refused(proc, *words)


@pytest.mark.parametrize("command", ["train", "promote"])
def test_an_older_schema_met_by_mlflow_itself_says_what_to_do(command, made_store, tmp_path):
    """A sqlite URI with options (as a server database) is not read at start: MLflow's own refusal of the
    schema, when it opens the store, is the same one line and exit 2, and no run is made."""
    db = tmp_path / "mlflow.db"
    db.write_bytes((made_store / "mlflow.db").read_bytes())
    with closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
        con.commit()
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()
    proc = hyperflow(COMMANDS[command], tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{db}?timeout=20")
    refused(proc, "older schema", f"mlflow db upgrade sqlite:///{db}?timeout=20")
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == runs


@pytest.mark.parametrize("command", ["train", "search", "promote"])
def test_an_experiment_id_that_names_none_or_a_deleted_one_is_one_line(command, made_store, tmp_path):
    uri = f"sqlite:///{made_store}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    try:
        gone = mlflow.create_experiment(f"gone-{command}")
        mlflow.delete_experiment(gone)
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    refused(
        hyperflow(COMMANDS[command], made_store, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_ID="999"),
        "MLFLOW_EXPERIMENT_ID=999",
        "no experiment of that id",
    )
    refused(
        hyperflow(COMMANDS[command], made_store, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_ID=gone),
        f"'gone-{command}' was deleted",
        f"--experiment-id {gone}",
    )


def test_a_store_made_at_start_logs_no_info_lines(tmp_path):
    """A new store (an empty cache: MLflow makes the empty store and logs its INFO records) for an experiment
    id it lacks: hyperflow's line alone."""
    proc = hyperflow(
        COMMANDS["train"],
        tmp_path,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db",
        MLFLOW_EXPERIMENT_ID="999",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    refused(proc, "no experiment of that id")


def test_predict_of_rows_with_other_columns_says_nothing_of_them(tmp_path, tracking_uri, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # the session store's, set by mlflow.set_experiment
    mlflow.set_tracking_uri(uri)
    try:
        assert main(["train", "data=wine", "epochs=1", "progress=false", "model_name=m", "experiment=rows"]) == 0
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    wine.frame.head(20).assign(row_id=range(20)).to_csv(tmp_path / "rows.csv", index=False)
    proc = hyperflow(COMMANDS["predict"], tmp_path, MLFLOW_TRACKING_URI=uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Found extra inputs" not in proc.stderr and "INFO" not in proc.stderr, proc.stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == 20
    verbose = hyperflow(COMMANDS["predict"], tmp_path, MLFLOW_TRACKING_URI=uri, HYPERFLOW_VERBOSE="1")
    assert verbose.returncode == 0 and "Found extra inputs" in verbose.stderr, verbose.stderr[-3000:]
