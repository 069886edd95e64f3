"""Spark trials (hyperopt SparkTrials, local[2]): each trial trains with its share of the cores, and trial
numbers are unique across resumes: a number a trial killed in flight used is never given again (trials in
flight leave gaps on Spark, where the local backend runs the last number again)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("pyspark", reason="pyspark is the optional extra hyperflow[spark]")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Spark needs Java 17 (.ci/run installs openjdk-17-jre-headless)", allow_module_level=True)

from hyperflow import machine
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.engine import spark
from hyperflow.workflows.search import search as run_search

pytestmark = pytest.mark.integration  # every test here starts processes

TESTS = str(Path(__file__).resolve().parent)
TINY = {"epochs": "1", "width": "16", "progress": "false", "flush_secs": "5"}
SPACE = "lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\nepochs: 1\n"


@pytest.fixture(scope="module")
def session():
    """A classic local[2] session whose Python workers can import this folder's helper models."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", spark.sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", spark.sys.executable)
    s = (
        SparkSession.builder.appName("hyperflow-tests")
        .master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.python.daemon.module", spark.DAEMON_MODULE)
        .config("spark.task.maxFailures", "1")
        .config("spark.executorEnv.PYTHONPATH", TESTS)
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def _children(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=100)


def test_trials_use_their_share_of_the_cores_and_numbers_skip_a_trial_killed_in_flight(
    session, tmp_path, experiment, client
):
    """One Spark search, then a resume (a single test: each Spark search costs seconds).
    Cores: the search is given threads=3; each of the 2 parallel trials trains with its CPUs // 2 (at least 1),
    as the probe model records in the executor. Numbers: a number that a trial killed in flight used is never
    given again, and a trial's number is the same in its tag, its param, its run name and the progress steps."""
    if session.sparkContext.environment.get("PYTHONPATH") != TESTS:
        pytest.skip("an earlier Spark session is still active: its workers cannot import the probe model")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    probes = tmp_path / "probes"
    probes.mkdir()
    common = {
        "backend": "spark",
        "parallelism": "2",
        "strategy": "random",
        "pruner": "none",
        "register": "false",
        "seed_presets": "false",
    }
    base = build_config(
        {
            **TINY,
            "threads": "3",
            "model": "thread_probe:build",
            "model_kwargs": {"out": str(probes)},
            "experiment": experiment,
        }
    )
    threads = torch.get_num_threads()
    try:
        first = run_search(
            build_search_config({**common, "space": str(space), "max_evals": "2"}), base, spark_session=session
        )
        assert [r.number for r in first.records] == [0, 1]
        # what a kill leaves of trial 2 while it ran: its child run, RUNNING, numbered, without results
        killed = client.create_run(
            first.experiment_id,
            run_name="trial-002",
            tags={"mlflow.parentRunId": first.run_id, "hyperflow.role": "trial", "hyperflow.trial_number": "2"},
        ).info.run_id
        second = run_search(
            build_search_config({**common, "resume": first.run_id, "max_evals": "4"}), base, spark_session=session
        )
    finally:
        torch.set_num_threads(threads)  # the driver applied threads=3 while checking the space
    in_trials = [int(p.read_text()) for p in probes.iterdir() if not p.name.startswith(f"{os.getpid()}-")]
    assert in_trials == [machine.threads_per_trial(2)] * 4

    assert [(r.number, r.status) for r in second.records] == [(0, "ok"), (1, "ok"), (3, "ok"), (4, "ok")]
    assert client.get_run(killed).info.status == "KILLED"  # the resume ended it
    runs = [r for r in _children(client, first.run_id) if r.info.run_id != killed]
    assert sorted(int(r.data.tags["hyperflow.trial_number"]) for r in runs) == [0, 1, 3, 4]
    for run in runs:
        number = int(run.data.tags["hyperflow.trial_number"])
        assert run.data.params["trial_number"] == str(number) and run.info.run_name == f"trial-{number:03d}"
        assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(first.run_id, "best_val_loss"))
    assert set(steps) <= {0, 1, 2, 3} and 3 in steps  # the search's progress: step = trials finished before


def test_an_objective_of_ones_own_runs_its_trials_as_spark_tasks(session, experiment, client):
    """objective= on Spark: each trial is a task that imports the function by name on an executor, in its own
    child run (the active run there), as on local workers."""
    if session.sparkContext.environment.get("PYTHONPATH") != TESTS:
        pytest.skip("an earlier Spark session is still active: its workers cannot import the objective")
    settings = build_search_config(
        {"objective": "user_objectives:pid_of_worker", "backend": "spark", "parallelism": "2", "max_evals": "3"}
    )
    space = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    outcome = run_search(
        settings, build_config({"experiment": experiment}), spark_session=session, space=space, given=()
    )
    assert [(r.number, r.status) for r in outcome.records] == [(0, "ok"), (1, "ok"), (2, "ok")]
    runs = _children(client, outcome.run_id)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert os.getpid() not in {r.data.metrics["pid"] for r in runs}
    assert outcome.best is not None and outcome.best.loss == min(r.data.metrics["loss"] for r in runs)
