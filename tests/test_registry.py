"""Promotion: the gate, champion/challenger on the same rows, exact versions, no lost update, bad input."""

import math
import os
import re
import signal
import uuid
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
import pytest

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.errors import ChampionConflict, UsageError
from hyperflow.tracking.registry import alias_version
from hyperflow.workflows.gate import Gate, Rule, build_gate
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.train import train


def items_csv(path, n: int = 240, seed: int = 0) -> str:
    """A table with a number, a category and a class that follows the number."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.normal(10, 3, n), "colour": rng.choice(["red", "blue", "green"], n)})
    frame["kind"] = np.where(frame["size"] > 10, "big", "small")
    frame.to_csv(path, index=False)
    return str(path)


@dataclass
class Trained:
    base: str  # registered model holding version 1 (good) and 2 (bad)
    data: str
    n_test: int

    def copy(self, client, *kinds: str) -> tuple[str, list[str]]:
        """A fresh registered model with copies of the trained versions (run ids kept), in that order."""
        name = f"m-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        numbers = {"good": "1", "bad": "2"}
        return name, [str(client.copy_model_version(f"models:/{self.base}/{numbers[k]}", name).version) for k in kinds]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    data = items_csv(tmp_path_factory.mktemp("registry") / "items.csv")
    mlflow.set_experiment("registry-models")
    base = f"base-{uuid.uuid4().hex[:8]}"
    common = {"data": data, "target": "kind", "width": "16", "progress": "false", "model_name": base}
    good = train(build_config({**common, "epochs": "15", "lr": "0.01"}))
    train(build_config({**common, "epochs": "1", "lr": "1e-6", "schedule": "constant"}))  # barely trained
    return Trained(base, data, good.result and int(mlflow.get_run(good.run_id).data.params["n_test"]))


def promote_runs(experiment: str) -> list:
    return mlflow.search_runs(
        experiment_names=[experiment], filter_string="tags.`hyperflow.role` = 'promote'", output_format="list"
    )


@pytest.mark.integration
def test_first_version_passes_on_absolute_thresholds_alone(trained, client, experiment):
    name, (good, bad) = trained.copy(client, "good", "bad")
    gate = "{accuracy: {threshold: 0.8, min_absolute_change: 0.05}}"
    low = promote(PromoteConfig(model_name=name, version=bad, gate=gate))
    assert not low.passed and not low.promoted and alias_version(client, name, "champion") is None
    assert client.get_model_version(name, bad).tags["validation_status"] == "failed"
    first = promote(PromoteConfig(model_name=name, version=good, gate=gate))
    assert first.passed and first.promoted and first.baseline_version is None and first.champion is None
    assert [c.kind for c in first.checks] == ["threshold"]  # no champion: the improvement rule does not apply
    assert alias_version(client, name, "champion") == good
    tags = client.get_model_version(name, good).tags
    assert tags["validation_status"] == "passed" and tags["baseline_version"] == "none"
    run = mlflow.get_run(first.run_id)
    assert run.data.tags["hyperflow.role"] == "promote" and run.data.tags["hyperflow.decision"] == "passed"
    assert run.data.params["eval_rows"].endswith(f"{trained.n_test} rows)")  # the test split of its data
    assert run.data.metrics["candidate_accuracy"] >= 0.8 and "champion_accuracy" not in run.data.metrics


def test_better_challenger_is_promoted_to_that_exact_version(trained, client, experiment, capsys):
    name, (bad, good, newest) = trained.copy(client, "bad", "good", "bad")
    client.set_registered_model_alias(name, "champion", bad)
    client.set_registered_model_alias(name, "challenger", good)
    assert main(["promote", f"model_name={name}", "dry_run=true", f"data={trained.data}"]) == 0
    assert alias_version(client, name, "champion") == bad  # a dry run moves nothing and tags nothing
    assert "validation_status" not in client.get_model_version(name, good).tags
    assert "dry run" in capsys.readouterr().out
    assert main(["promote", f"model_name={name}", "gate.accuracy.min_absolute_change=0.1"]) == 0
    assert alias_version(client, name, "champion") == good != newest  # the version scored, not the latest
    version = client.get_model_version(name, good)
    assert version.tags["validation_status"] == "passed" and version.tags["baseline_version"] == bad
    assert "promoted to champion" in version.description and f"champion v{bad}" in version.description
    dry, real = sorted(promote_runs(experiment), key=lambda r: r.info.start_time)
    assert dry.data.tags["hyperflow.promoted"] == "false" and real.data.tags["hyperflow.promoted"] == "true"
    assert dry.data.params["eval_rows"].endswith("(all 240 rows)")  # data= scores every row of the file
    assert real.data.metrics["candidate_accuracy"] >= real.data.metrics["champion_accuracy"] + 0.1


def test_worse_challenger_is_rejected_and_the_alias_stays(trained, client, experiment, capsys):
    name, (good, bad) = trained.copy(client, "good", "bad")
    client.set_registered_model_alias(name, "champion", good)
    client.set_registered_model_alias(name, "challenger", bad)
    assert main(["promote", f"model_name={name}"]) == 3
    assert "REJECTED" in capsys.readouterr().out
    assert alias_version(client, name, "champion") == good
    version = client.get_model_version(name, bad)
    assert version.tags["validation_status"] == "failed" and version.tags["baseline_version"] == good
    assert "validation failed" in version.description
    run = promote_runs(experiment)[0]
    assert run.info.status == "FINISHED" and run.data.tags["hyperflow.decision"] == "failed"


def test_a_champion_moved_mid_promotion_is_scored_again_not_overwritten(trained, client, experiment):
    name, (bad, good, rival) = trained.copy(client, "bad", "good", "good")
    client.set_registered_model_alias(name, "champion", bad)

    def someone_promotes_rival() -> None:  # another job moves the champion between scoring and the move
        client.set_registered_model_alias(name, "champion", rival)

    outcome = promote(
        PromoteConfig(model_name=name, version=good, gate="{accuracy: {min_absolute_change: 0.01}}"),
        before_move=someone_promotes_rival,
    )
    assert not outcome.promoted and outcome.baseline_version == rival  # judged against the new champion
    assert alias_version(client, name, "champion") == rival
    assert client.get_model_version(name, good).tags["baseline_version"] == rival
    assert mlflow.get_run(outcome.run_id).data.tags["hyperflow.champion_changed"] == f"{bad} -> {rival}"


def test_a_champion_that_keeps_moving_stops_the_promotion(trained, client, experiment):
    name, (bad, other, good) = trained.copy(client, "bad", "bad", "good")
    client.set_registered_model_alias(name, "champion", bad)
    flip = iter([other, bad, other])
    with pytest.raises(ChampionConflict, match="moved during each of 2 attempts"):
        promote(
            PromoteConfig(model_name=name, version=good, max_attempts=2),
            before_move=lambda: client.set_registered_model_alias(name, "champion", next(flip)),
        )
    assert alias_version(client, name, "champion") != good
    assert promote_runs(experiment)[0].info.status == "FAILED"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_the_champion_moves_waits_until_the_promotion_is_recorded(
    trained, client, experiment, signum, capsys, cli_signals
):
    """Ctrl-C or SIGTERM once the gate has passed: the move, the version's tags and the run's end happen all
    the same (no KILLED promote run that moved the champion), and the command's work ends there."""
    name, (bad, good) = trained.copy(client, "bad", "good")
    client.set_registered_model_alias(name, "champion", bad)
    outcome = promote(PromoteConfig(model_name=name, version=good), before_move=lambda: os.kill(os.getpid(), signum))
    assert outcome.promoted and alias_version(client, name, "champion") == good
    assert mlflow.get_run(outcome.run_id).info.status == "FINISHED"
    assert client.get_model_version(name, good).tags["validation_status"] == "passed"
    assert "moving the champion alias; stopping once that is done" in capsys.readouterr().err


@pytest.fixture(scope="module")
def guarded(trained, tmp_path_factory):
    """A model with a champion, a version without a run, and no challenger."""
    client = mlflow.MlflowClient()
    name, (good,) = trained.copy(client, "good")
    client.set_registered_model_alias(name, "champion", good)
    source = client.get_model_version(name, good).source
    orphan = client.create_model_version(name, source, run_id=None).version
    no_target = tmp_path_factory.mktemp("bad") / "no_target.csv"
    pd.read_csv(trained.data).drop(columns=["kind"]).to_csv(no_target, index=False)
    return {"name": name, "good": good, "orphan": str(orphan), "no_target": str(no_target)}


@pytest.mark.parametrize(
    "args, message",
    [
        (["model_name=no-such-model"], "unknown model 'no-such-model'"),
        (["model_name={name}"], "has no version with alias 'challenger'"),
        (["model_name={name}", "version=99"], "has no version 99"),
        (["model_name={name}", "version={orphan}"], "has no run"),
        (["model_name={name}", "version={good}", "data={no_target}"], "target column 'kind' is not in"),
        (["model_name={name}", "version={good}", "gate.rmse.threshold=1"], "unknown metric 'rmse'"),
        (["model_name={name}", "version={good}", "gate={{accuracy: {{at_least: 1}}}}"], "needs a mapping with any of"),
        (
            ["model_name={name}", "version={good}", "gate.accuracy.min_relative_change=-0.5"],
            "accuracy min_relative_change -0.5 is out of its range",
        ),
        (["version=1"], "model_name is required"),
    ],
)
def test_bad_input_is_one_line_and_moves_nothing(guarded, client, experiment, capsys, args, message):
    code = main(["promote", *(a.format(**guarded) for a in args)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert alias_version(client, guarded["name"], "champion") == guarded["good"]
    assert promote_runs(experiment) == []


def test_gate_knows_each_metrics_direction():
    gate = Gate((Rule("rmse", threshold=0.9, min_absolute_change=0.1, min_relative_change=0.2),))
    checks = {c.kind: c.passed for c in gate.check({"rmse": 1.0}, {"rmse": 1.3})}
    assert checks == {"threshold": False, "min_absolute_change": True, "min_relative_change": True}
    checks = {c.kind: c.passed for c in gate.check({"rmse": 0.8}, {"rmse": 0.85})}
    assert checks == {"threshold": True, "min_absolute_change": False, "min_relative_change": False}
    assert [c.kind for c in gate.check({"rmse": 0.8}, None)] == ["threshold"]
    accuracy = Gate((Rule("accuracy", threshold=0.9),))
    assert not accuracy.check({"accuracy": float("nan")}, None)[0].passed


def test_gate_from_yaml_file_inline_and_dotted_rules(tmp_path):
    assert build_gate(None, "regression").to_dict() == {"rmse": {"min_absolute_change": 0.0}}
    path = tmp_path / "gate.yaml"
    path.write_text("accuracy: {threshold: 0.9}\nlog_loss: {min_relative_change: 0.05}\n")
    gate = build_gate(str(path), "classification", {"gate.accuracy.min_absolute_change": "0.01"})
    assert gate.to_dict() == {
        "accuracy": {"threshold": 0.9, "min_absolute_change": 0.01},
        "log_loss": {"min_relative_change": 0.05},
    }
    assert build_gate("{f1: {threshold: 0.5}}", "classification").to_dict() == {"f1": {"threshold": 0.5}}
    for bad, message in [
        ("missing.yaml", "not found"),
        ("{accuracy: [", "not valid YAML"),
        ("{accuracy: {threshold: high}}", "must be numbers"),
        ("[1, 2]", "must map metrics"),
        ("{accuracy: {threshold: 0.9}, accuracy: {threshold: 0.5}}", "'accuracy' appears twice"),
        ("{accuracy: {threshold: 1.5}}", "accuracy threshold 1.5 is out of its range"),
        ("{f1: {threshold: -0.1}}", "f1 is from 0 to 1"),
    ]:
        with pytest.raises(UsageError, match=message):
            build_gate(bad, "classification")


@pytest.mark.parametrize(
    "spec, task, message",
    [
        (
            "{accuracy: {min_relative_change: -0.5}}",
            "classification",
            "relative improvement over the champion is from 0",
        ),
        ("{log_loss: {min_relative_change: 1.5}}", "classification", "log_loss min_relative_change 1.5 is out of"),
        ("{accuracy: {min_absolute_change: -0.1}}", "classification", "from 0 (not worse) to 1, the whole range of"),
        ("{dice: {min_absolute_change: 1.5}}", "segmentation", "dice min_absolute_change 1.5 is out of its range"),
        ("{rmse: {min_absolute_change: -1}}", "regression", "improvement over the champion is at least 0"),
        ("{accuracy: {threshold: yes}}", "classification", "must be numbers"),  # YAML's yes: MLflow refuses it too
    ],
)
def test_gate_rules_outside_what_they_can_mean_are_refused(spec, task, message):
    """Every rule kind within what MLflow's MetricThreshold accepts (a relative change 0-1, an improvement not
    below 0; 0 means "not worse" here) and within the metric's range; before, only thresholds were checked."""
    with pytest.raises(UsageError, match=re.escape(message)):
        build_gate(spec, task)
    edges = build_gate(
        "{accuracy: {min_absolute_change: 0, min_relative_change: 1}, f1: {min_absolute_change: 1}}", "classification"
    )
    assert edges.to_dict()["accuracy"] == {"min_absolute_change": 0.0, "min_relative_change": 1.0}


@pytest.mark.integration
def test_a_search_challenger_is_promoted_on_its_trials_settings(trained, client, experiment, tmp_path):
    from hyperflow.config.search import build_search_config
    from hyperflow.workflows.search import search

    (tmp_path / "space.yaml").write_text("lr: {type: loguniform, low: 3.0e-3, high: 3.0e-2}\nepochs: 4\n")
    name = f"searched-{uuid.uuid4().hex[:8]}"
    found = search(
        build_search_config(
            {
                "max_evals": "2",
                "strategy": "random",
                "pruner": "none",
                "space": str(tmp_path / "space.yaml"),
                "model_name": name,
            }
        ),
        build_config({"data": trained.data, "target": "kind", "width": "16", "test_size": "0.2", "progress": "false"}),
    )
    assert found.registered == (name, "1")
    assert main(["promote", f"model_name={name}", "allow_first=true"]) == 0  # no champion: nothing to compare
    assert alias_version(client, name, "champion") == "1"
    run = promote_runs(experiment)[0]
    assert run.data.params["eval_rows"].endswith("(seed 42, 48 rows)")  # test_size=0.2 of the search's base


def test_promote_from_another_folder_finds_the_data_a_relative_path_named(tmp_path, monkeypatch, experiment, client):
    """data=items.csv was relative to where the model was trained; promote (and retrain) from elsewhere, e.g.
    a scheduler's working directory, read the file the run read (its recorded absolute path)."""
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    items_csv(tmp_path / "project" / "items.csv")
    monkeypatch.chdir(tmp_path / "project")
    name = f"rel-{uuid.uuid4().hex[:8]}"
    train(
        build_config(
            {
                "data": "items.csv",
                "target": "kind",
                "width": "16",
                "epochs": "2",
                "progress": "false",
                "model_name": name,
                "experiment": experiment,
            }
        )
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    outcome = promote(PromoteConfig(model_name=name, version="1", allow_first=True, experiment=experiment))
    assert outcome.promoted and str(tmp_path / "project" / "items.csv") in outcome.rows


def test_gate_json_stays_json_when_the_champion_scores_zero():
    """A relative change against a champion at 0 is infinite: gate.json writes it as text, not Infinity."""
    import json

    from hyperflow.workflows.promote import _json_safe

    gate = build_gate("{accuracy: {min_relative_change: 0.1}}", "classification")
    (check,) = gate.check({"accuracy": 0.5}, {"accuracy": 0.0})
    assert check.passed and not math.isfinite(check.value)
    assert json.loads(json.dumps(_json_safe(vars(check)), allow_nan=False))["value"] == "inf"
