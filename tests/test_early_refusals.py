"""Input that needs only a file, the space or the store is refused before torch is imported and before a
worker process starts: a space file, the run ``resume=`` names, ``task=``, ``model=``, a config file.
Behaviour only (what a real interpreter imported when it refused); the timings are bench/first_error.py's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperflow import names

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Each case: the command line (``{d}``: the test's folder, ``{train_run}`` and ``{search_run}``: run ids) and
# words the one error line must hold. The first two were refused early before these checks: guards, run
# first (a case that imports torch leaves it imported for the cases after it).
CASES = {
    "config: no such file": (["train", "config={d}/nowhere.yaml"], "config file"),
    "model: no such built-in": (["lr-find", "data={d}/houses.csv", "target=price", "model=resnet"], "model"),
    "space: unknown dimension type": (
        ["search", "data={d}/houses.csv", "target=price", "space={d}/bad.yaml"],
        "unknown type 'gaussian'",
    ),
    "space: not YAML": (["search", "data={d}/houses.csv", "target=price", "space={d}/broken.yaml"], "not valid YAML"),
    "space: no such file": (["search", "data={d}/houses.csv", "target=price", "space={d}/nowhere.yaml"], "not found"),
    "space: a range end that is no setting": (
        ["search", "data={d}/houses.csv", "target=price", "space={d}/zero_width.yaml"],
        "invalid combination",
    ),
    "space: a grid too large": (
        ["search", "data={d}/houses.csv", "target=price", "strategy=grid", "space={d}/huge_grid.yaml"],
        "grid",
    ),
    "resume: unknown run": (["search", "resume=0123456789abcdef0123456789abcdef"], "no such run"),
    "resume: not a search run": (["search", "resume={train_run}"], "is not a search run"),
    "resume: a deleted search": (["search", "resume={deleted_run}"], "was deleted"),
    "resume: a setting it keeps": (["search", "resume={search_run}", "optimizer=sgd"], "optimizer was adam"),
    "resume: its space file": (["search", "resume={search_run}", "space={d}/bad.yaml"], "unknown type"),
    "task: regression of text": (
        ["train", "data={d}/houses.csv", "target=city", "task=regression"],
        "needs a numeric target",
    ),
    "task: segmentation of a table": (
        ["search", "data={d}/houses.csv", "target=price", "task=segmentation"],
        "is a table",
    ),
    "task: a built-in table": (["lr-find", "data=wine", "task=segmentation"], "is a table"),
    "task: labels of masks": (["train", "data=shapes", "task=classification"], "holds images and masks"),
    "model: no such module": (
        ["train", "data={d}/houses.csv", "target=price", "model=no_such_pkg.nets:mlp"],
        "cannot import module",
    ),
    "model: no such function": (
        ["search", "data={d}/houses.csv", "target=price", "model=user_nets:missing"],
        "has no function 'missing'",
    ),
}

PROBE = """
import contextlib, io, json, sys
from multiprocessing import forkserver
from hyperflow.cli import main
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # a traceback: the case fails, the others still run
            code = repr(exc)
    out[name] = {"code": code, "stderr": err.getvalue(), "torch": "torch" in sys.modules,
                 "workers": forkserver._forkserver._forkserver_pid is not None}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every case run by ``hyperflow.cli.main`` in one fresh interpreter (on the session's store), with what it
    had imported and started when it refused."""
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("refusals")
    rows = "".join(f"{i % 5},{'ab'[i % 2]},{100 + i}\n" for i in range(60))
    (d / "houses.csv").write_text("rooms,city,price\n" + rows)
    (d / "bad.yaml").write_text("lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}\nwidth: {type: gaussian}\n")
    (d / "broken.yaml").write_text("lr: {type: uniform, low: [0.1\n")
    (d / "zero_width.yaml").write_text("width: {type: int, low: 0, high: 8}\n")
    (d / "huge_grid.yaml").write_text(
        "".join(f"{k}: {{type: uniform, low: 0.1, high: 0.9, grid: 10000}}\n" for k in ("dropout", "momentum"))
    )
    (d / "user_nets.py").write_text("def other(input_shape, output_size):\n    return None\n")  # imports no torch
    client = MlflowClient()
    experiment_id = client.create_experiment(f"refusals-{os.getpid()}-{id(d)}")
    runs = {}
    for key, role in (
        ("train_run", names.ROLE_TRAIN),
        ("search_run", names.ROLE_SEARCH),
        ("deleted_run", names.ROLE_SEARCH),
    ):
        run = client.create_run(experiment_id, tags={names.ROLE: role})
        client.log_param(run.info.run_id, "optimizer", "adam")
        client.set_terminated(run.info.run_id, "KILLED")
        runs[key] = run.info.run_id
    client.delete_run(runs["deleted_run"])
    cases = {name: [a.format(d=d, **runs) for a in argv] for name, (argv, _) in CASES.items()}
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cases)], capture_output=True, text=True, env=env, cwd=d
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_refused_in_one_line_before_torch_and_workers(refusals, case):
    got = refusals[case]
    lines = got["stderr"].strip().splitlines()
    assert got["code"] == 2 and len(lines) == 1 and CASES[case][1] in lines[0], got["stderr"]
    assert not got["torch"], f"{case}: torch was imported before the refusal"
    assert not got["workers"], f"{case}: the worker processes' fork server was started before the refusal"


def search_with_import_times(*settings: str, uri: str, cwd) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """``python -X importtime -m hyperflow search <settings>`` against the store at ``uri``: the process, every
    module it imported, and the other lines of its stderr (what it said)."""
    env = {**os.environ, "PYTHONPATH": SRC, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-X", "importtime", "-m", "hyperflow", "search", *settings]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    lines = proc.stderr.splitlines()
    imported = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
    return proc, imported, [line for line in lines if not line.startswith("import time:")]


@pytest.mark.integration
def test_a_whole_process_refuses_an_unknown_resume_without_torch_or_a_new_store(tmp_path):
    """``python -X importtime -m hyperflow``: every module the process imported is listed; a folder without a
    store gets none made for a mistyped run id."""
    proc, imported, said = search_with_import_times(
        "resume=0123456789abcdef0123456789abcdef", uri=f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path
    )
    assert proc.returncode == 2 and len(said) == 1 and "no such run" in said[0], said
    assert "mlflow" in imported and "torch" not in imported
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.integration
def test_an_unknown_resume_in_a_sqlite_store_is_refused_before_mlflow_is_imported(tmp_path, tracking_uri, client):
    """The store exists (the session's, holding runs): the id is looked up in the file itself, and MLflow (~2 CPU-s
    to import) is not imported; an id it holds still goes through MLflow (the other resume cases above)."""
    client.search_experiments()  # the session's store exists, made by MLflow
    unknown = "0123456789abcdef0123456789abcdef"
    proc, imported, said = search_with_import_times(f"resume={unknown}", uri=tracking_uri, cwd=tmp_path)
    assert proc.returncode == 2 and said == [f"hyperflow: error: resume={unknown}: no such run in {tracking_uri}"], said
    assert "mlflow" not in imported and "torch" not in imported
