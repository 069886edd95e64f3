"""Trials on Spark (hyperopt SparkTrials, local[2]): nesting, statuses, stop rules, the best model, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import forked
import mlflow
import pytest

pyspark = pytest.importorskip("pyspark", reason="pyspark is the optional extra hyperflow[spark]")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Spark needs Java 17 (.ci/run installs openjdk-17-jre-headless)", allow_module_level=True)

from services import mlflow_server  # noqa: E402,F401  (PostgreSQL-backed server with basic auth)

from hyperflow.config import build_config  # noqa: E402
from hyperflow.config.search import build_search_config  # noqa: E402
from hyperflow.engine import spark  # noqa: E402
from hyperflow.workflows.search import search as run_search  # noqa: E402

pytestmark = pytest.mark.integration  # every test here starts processes

TINY = {"epochs": "3", "width": "32", "progress": "false", "flush_secs": "5"}
SPACE = """
lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
width: {type: choice, values: [16, 32]}
epochs: 3
"""


@pytest.fixture(scope="module")
def session():
    s = spark.session_for(None, 2)
    yield s
    s.stop()


def _children(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=100)


def test_spark_search_links_every_trial_and_registers_the_best(session, tmp_path, experiment, client, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    settings = build_search_config(
        {
            "space": str(space),
            "backend": "spark",
            "parallelism": "2",
            "max_evals": "4",
            "strategy": "bohb",  # BOHB's sampler under Hyperband's brackets, the peers' curves sent with each trial
            "n_startup_jobs": "2",
            "pruner": "hyperband",
            "min_epochs": "1",
            "model_name": f"{experiment}-spark",
        }
    )
    base = build_config({**TINY, "progress": "true", "experiment": experiment})
    outcome = run_search(settings, base, spark_session=session)
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("search: trial ")]
    assert len(shown) == 4 and "4/4 done" in shown[-1]  # the driver's live progress: a line per finished trial
    children = _children(client, outcome.run_id)
    assert len(children) == 4 and len(outcome.records) == 4
    assert all(c.info.status == "FINISHED" and c.data.tags["hyperflow.role"] == "trial" for c in children)
    assert {c.data.tags["hyperflow.trial_status"] for c in children} <= {"ok", "pruned"}
    assert sorted(int(c.data.params["trial_number"]) for c in children) == [0, 1, 2, 3]
    assert all("val_loss" in c.data.metrics and "lr" in c.data.params for c in children)
    for c in children:  # a trial logs its point, its number and its seed: none of the driver's settings
        point = {k: str(v) for k, v in json.loads(c.data.tags["hyperflow.trial_params"]).items()}
        assert c.data.params == {**point, "trial_number": c.data.tags["hyperflow.trial_number"], "seed": "42"}
    parent = client.get_run(outcome.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["hyperflow.stop_reason"] == "budget"
    assert parent.data.tags["hyperflow.best_run_id"] == outcome.best.run_id
    assert len(client.get_metric_history(outcome.run_id, "best_val_loss")) >= 1
    version = client.get_model_version_by_alias(f"{experiment}-spark", "challenger")
    assert version.tags["trial_run_id"] == outcome.best.run_id


def test_a_resumed_spark_search_never_proposes_a_point_again(session, tmp_path, experiment, client):
    """The suggestion for each trial id is seeded by (seed, id) and new ids continue after every number used,
    so a resume (here with a larger budget) draws new points, in parallel too."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    common = {
        "backend": "spark",
        "parallelism": "2",
        "strategy": "random",
        "pruner": "none",
        "register": "false",
        "seed_presets": "false",
    }
    base = build_config({**TINY, "epochs": "1", "experiment": experiment})
    first = run_search(
        build_search_config({**common, "space": str(space), "max_evals": "2"}), base, spark_session=session
    )
    second = run_search(
        build_search_config({**common, "resume": first.run_id, "max_evals": "4"}), base, spark_session=session
    )
    children = _children(client, first.run_id)
    points = [(c.data.params["lr"], c.data.params["width"]) for c in children]
    assert len(children) == 4 and len(set(points)) == 4 and len(second.records) == 4
    assert sorted(int(c.data.params["trial_number"]) for c in children) == [0, 1, 2, 3]
    assert all(c.info.status == "FINISHED" for c in children)


def test_spark_stop_rules_end_the_search_without_hanging(session, tmp_path, experiment, client):
    """loss_threshold met by the first trial: the search stops after the trials in flight (the stop rule sits
    in the suggestion step; early_stop_fn would hang SparkTrials) and no child is left RUNNING."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    settings = build_search_config(
        {
            "space": str(space),
            "backend": "spark",
            "parallelism": "2",
            "max_evals": "20",
            "strategy": "tpe",
            "pruner": "none",
            "loss_threshold": "100",
            "early_stop": "1",
            "register": "false",
            "seed_presets": "false",
        }
    )
    outcome = run_search(
        settings, build_config({**TINY, "epochs": "1", "experiment": experiment}), spark_session=session
    )
    children = _children(client, outcome.run_id)
    assert outcome.stop_reason == "loss_threshold"
    assert 1 <= len(children) <= 3 and all(c.info.status != "RUNNING" for c in children)


def test_spark_search_against_the_postgres_server(session, mlflow_server, tmp_path):
    """Executors log to the shared server with the driver's credentials (which no run records)."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    user, password = mlflow_server.create_user(role="searcher")
    name = f"spark-{uuid.uuid4().hex[:6]}"
    with mlflow_server.as_user(user):
        settings = build_search_config(
            {
                "space": str(space),
                "backend": "spark",
                "parallelism": "2",
                "max_evals": "3",
                "strategy": "random",
                "pruner": "none",
                "model_name": name,
            }
        )
        outcome = run_search(settings, build_config({**TINY, "experiment": name}), spark_session=session)
        client = mlflow.MlflowClient()
        children = _children(client, outcome.run_id)
        assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
        assert {c.data.tags["hyperflow.trial_status"] for c in children} == {"ok"}
        assert client.get_model_version_by_alias(name, "challenger").tags["search_run_id"] == outcome.run_id
        for run in [client.get_run(outcome.run_id), *children]:
            recorded = [*run.data.params.values(), *run.data.tags.values()]
            assert not any(password in value for value in recorded)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return forked.run(
        [sys.executable, "-m", "hyperflow", "search", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, env, fragment",
    [
        (["backend=spark", "strategy=grid"], None, "backend=spark runs random or tpe"),
        (["backend=spark", "parallelism=0"], None, "parallelism must be at least 1"),
        (["backend=ray"], None, "unknown backend 'ray'"),
        (["backend=spark", "max_evals=1", "epochs=1"], {"SPARK_REMOTE": "sc://127.0.0.1:15002"}, "Spark Connect"),
    ],
)
def test_bad_spark_settings_give_one_line_and_write_nothing(args, env, fragment, experiment, client):
    before = len(client.search_runs([client.get_experiment_by_name(experiment).experiment_id]))
    proc = _cli(*args, f"experiment={experiment}", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]
    assert len(client.search_runs([client.get_experiment_by_name(experiment).experiment_id])) == before
