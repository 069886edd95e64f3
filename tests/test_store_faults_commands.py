"""A store that fails gives one line, for every command, as real processes see it: a tracking server that
is not there (a URI with a password, a closed port), a sqlite store that refuses writes (``chattr +i`` on
the file: tests run as root, where a mode bit stops no write; a read-only URI where chattr is unavailable),
and one that turns read-only in the middle of a search. The line names the store without credentials and
what was written; the libraries' tracebacks stay out of sight unless HYPERFLOW_VERBOSE=1."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import forked
import mlflow
import pytest
from services import free_port

from hyperflow.cli import main
from hyperflow.tracking import new_store

pytestmark = pytest.mark.integration  # every test here starts processes

PASSWORD = "s3cret-Pw-23"
# a store failure: 1 (the job failed); promote and retrain: 2, as when their registry cannot be read
CODES = {"train": 1, "lr-find": 1, "search": 1, "predict": 1, "promote": 2, "retrain": 2}


def commands(rows: Path) -> dict[str, list[str]]:
    return {
        "train": ["train", "data=digits", "epochs=1", "progress=false"],
        "lr-find": ["lr-find", "data=digits", "num_iter=20", "progress=false"],
        "search": ["search", "data=digits", "max_evals=2", "epochs=1", "register=false", "progress=false"],
        "promote": ["promote", "model_name=m", "version=1"],
        "retrain": ["retrain", "model_name=m", "epochs=1", "force=true"],
        "predict": ["predict", "model=models:/m@champion", f"data={rows}", f"out={rows.parent / 'out.csv'}"],
    }


def hyperflow(args: list[str], uri: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYPERFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", **extra)
    return forked.run(
        [sys.executable, "-m", "hyperflow", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tracking_uri: str) -> Path:
    """A folder with a sqlite store holding model 'm' (version 1, champion) and rows it can score."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder}/mlflow.db"
    new_store.make_if_missing(uri)  # a copy of the empty store, as a command makes it
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("Default")  # not the experiment an earlier test of this process made in another store
    try:
        assert main(["train", "data=digits", "epochs=1", "progress=false", "model_name=m"]) == 0
        assert main(["promote", "model_name=m", "version=1", "allow_first=true"]) == 0
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    pd.DataFrame(digits.data[:20], columns=digits.feature_names).to_csv(folder / "rows.csv", index=False)
    return folder


def _immutable(path: Path, on: bool) -> bool:
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def read_only(store: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of ``store`` whose database refuses writes, and its URI."""
    folder = tmp_path / "ro"
    shutil.copytree(store, folder)
    db = folder / "mlflow.db"
    if shutil.which("chattr") and _immutable(db, True):
        try:
            yield folder, f"sqlite:///{db}"
        finally:
            _immutable(db, False)
    else:  # no chattr here (not root, or a file system without it): sqlite's own read-only mode
        yield folder, f"sqlite:///file:{db}?mode=ro&uri=true"


def _one_line(proc: subprocess.CompletedProcess, command: str) -> str:
    """hyperflow's line, checked: the last on stderr, at most one library line above it, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and 1 <= len(lines) <= 2, proc.stderr[-3000:]
    assert lines[-1].startswith(f"hyperflow {command}: error: the "), proc.stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize("command", [*CODES, "train experiment=probe"])
def test_an_unreachable_server_with_a_password_gives_one_line_without_it(command, store, tmp_path):
    port = free_port()  # nothing listens there
    command, *more = command.split()  # experiment=: the experiment is looked up before anything else
    proc = hyperflow(
        commands(store / "rows.csv")[command] + more, f"http://alice:{PASSWORD}@127.0.0.1:{port}", tmp_path
    )
    line = _one_line(proc, command)
    assert proc.returncode == CODES[command], proc.stderr[-3000:]
    assert f"http://127.0.0.1:{port}" in line and "Connection refused" in line and "nothing" in line, line
    assert PASSWORD not in proc.stdout + proc.stderr and "alice" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [c for c in CODES if c != "predict"])
def test_a_read_only_store_gives_one_line_and_writes_nothing(command, read_only):
    folder, uri = read_only
    proc = hyperflow(commands(folder / "rows.csv")[command], uri, folder)
    line = _one_line(proc, command)
    assert proc.returncode == CODES[command], proc.stderr[-3000:]
    assert f"the tracking store {uri} failed: " in line and "readonly database" in line, line
    assert "nothing was written" in line, line
    runs = mlflow.MlflowClient(uri).search_runs(["0"])
    assert len(runs) == 2 and not [r for r in runs if r.info.status == "RUNNING"]  # the setup's train, promote


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_a_store_in_a_read_only_folder_gives_one_line(command, store, tmp_path):
    """The folder refuses new files: sqlite cannot make its journal, nor MLflow its artifact folders."""
    folder = tmp_path / "ro"
    shutil.copytree(store, folder)
    if not shutil.which("chattr") or not _immutable(folder, True):
        pytest.skip("this file system has no immutable attribute")
    try:
        proc = hyperflow(commands(folder / "rows.csv")[command], f"sqlite:///{folder}/mlflow.db", tmp_path)
    finally:
        _immutable(folder, False)
    line = _one_line(proc, command)
    assert proc.returncode == CODES[command] and "unable to open database file" in line, proc.stderr[-3000:]
    assert f"the tracking store sqlite:///{folder}/mlflow.db failed: " in line and "nothing was written" in line


def test_predict_reads_a_read_only_store(read_only):
    folder, uri = read_only
    proc = hyperflow(commands(folder / "rows.csv")["predict"], uri, folder)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    assert (folder / "out.csv").exists()


def test_verbose_shows_the_libraries_tracebacks(read_only):
    folder, uri = read_only
    proc = hyperflow(commands(folder / "rows.csv")["train"], uri, folder, HYPERFLOW_VERBOSE="1")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "readonly database" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("hyperflow train: error: the tracking store")


@pytest.mark.skipif(not shutil.which("chattr"), reason="chattr is needed to make a store read-only mid-search")
def test_a_store_turning_read_only_mid_search_gives_its_line_without_tracebacks(tmp_path):
    db = tmp_path / "mlflow.db"
    if not _immutable(tmp_path, True) or not _immutable(tmp_path, False):
        pytest.skip("this file system has no immutable attribute")
    uri = f"sqlite:///{db}"
    mlflow.MlflowClient(uri).search_experiments()  # the tables exist before the search opens the store
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYPERFLOW_"))}
    proc = forked.Popen(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "search",
            "data=digits",
            "max_evals=12",
            "epochs=3",
            "register=false",
            "progress=false",
        ],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while sqlite3.connect(db).execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the search ended before two trials"
            time.sleep(0.2)
        assert _immutable(db, True) and _immutable(tmp_path, True)  # no write, no journal file
        _, err = proc.communicate(timeout=240)
    finally:
        _immutable(db, False)
        _immutable(tmp_path, False)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 2, err[-3000:]
    assert lines[-1].startswith("hyperflow search: error: the tracking store") and "resume=" in lines[-1], err
