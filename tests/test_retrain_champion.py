"""retrain knows the champion's own run: what made the champion (the same data, code and settings) is not
trained again, since a copy would pass the gate on a tie, whether the champion came from ``train``, from a
search or from an earlier retrain; a setting that changes what is trained, or a search's refit, trains."""

from __future__ import annotations

import uuid

import mlflow
import pytest
from test_registry import items_csv

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.tracking.registry import alias_version
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.retrain import RetrainConfig, retrain
from hyperflow.workflows.train import train

EXPERIMENT = "retrain-champion-tests"


def versions(name: str) -> int:
    return len(mlflow.MlflowClient().search_model_versions(f"name = '{name}'"))


def champion_of(name: str) -> str | None:
    return alias_version(mlflow.MlflowClient(), name, "champion")


@pytest.fixture
def day1(tmp_path) -> str:
    return items_csv(tmp_path / "day1.csv", seed=1)


@pytest.fixture
def trained(day1) -> tuple[str, str]:
    """A model whose champion (version 1) ``train`` made on day1: (name, its run id)."""
    mlflow.set_experiment(EXPERIMENT)
    name = f"champion-{uuid.uuid4().hex[:8]}"
    outcome = train(
        build_config(
            {
                "data": day1,
                "target": "kind",
                "width": "16",
                "epochs": "4",
                "lr": "0.01",
                "progress": "false",
                "model_name": name,
                "experiment": EXPERIMENT,
            }
        )
    )
    promote(
        PromoteConfig(model_name=name, version=str(outcome.registered_version), allow_first=True, experiment=EXPERIMENT)
    )
    return name, outcome.run_id


@pytest.mark.integration
def test_a_champion_from_train_is_not_trained_again_unless_a_setting_changes(trained, day1):
    name, run_id = trained
    config = RetrainConfig(model_name=name, data=day1, experiment=EXPERIMENT)
    same = retrain(config, {"epochs": 4, "progress": False}, settle=0.1)  # given, but as the champion had them
    assert same.outcome == "skipped" and same.by_champion and same.previous_run_id == run_id
    assert versions(name) == 1 and champion_of(name) == "1"
    other = retrain(config, {"epochs": 5}, settle=0.1)  # another model: trained and gated
    assert other.outcome in ("promoted", "rejected") and other.version == "2" and versions(name) == 2


@pytest.mark.integration
def test_a_champion_from_an_earlier_retrain_is_not_trained_again(trained, day1):
    name, _ = trained
    config = RetrainConfig(model_name=name, data=day1, experiment=EXPERIMENT)
    forced = retrain(
        RetrainConfig(model_name=name, data=day1, experiment=EXPERIMENT, force=True), {"epochs": 4}, settle=0.1
    )  # a copy, trained because it was asked for: it passes on the tie
    assert forced.outcome == "promoted" and champion_of(name) == forced.version == "2"
    made_it = mlflow.MlflowClient().get_model_version(name, "2").run_id  # the train run under that retrain
    again = retrain(config, settle=0.1)  # no setting given: another key than the forced one's, same training
    assert again.outcome == "skipped" and again.by_champion and again.previous_run_id == made_it
    assert versions(name) == 2 and champion_of(name) == "2"


@pytest.mark.integration
@pytest.mark.parametrize("refit", [False, True])
def test_a_champion_from_a_search_is_not_trained_again_unless_it_was_refit(day1, tmp_path, capsys, refit):
    client = mlflow.MlflowClient()
    name = f"searched-{uuid.uuid4().hex[:8]}"
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: choice, values: [0.01, 0.03]}\n")
    assert (
        main(
            [
                "search",
                f"data={day1}",
                "target=kind",
                f"space={space}",
                "max_evals=2",
                "epochs=3",
                "width=16",
                "parallelism=1",
                f"refit={str(refit).lower()}",
                f"model_name={name}",
                f"experiment={EXPERIMENT}",
            ]
        )
        == 0
    )
    version = alias_version(client, name, "challenger")
    promote(PromoteConfig(model_name=name, version=version, allow_first=True, experiment=EXPERIMENT))
    best_trial = client.get_model_version(name, version).run_id
    capsys.readouterr()
    code = main(["retrain", f"model_name={name}", f"data={day1}", f"experiment={EXPERIMENT}"])
    out = capsys.readouterr().out
    if refit:  # the champion learnt from train+val: a retrain (train split only) is another model
        assert code in (0, 3) and "skipped" not in out and versions(name) == 2
    else:
        assert code == 0 and f"skipped: the champion's own run {best_trial}" in out
        assert versions(name) == 1 and champion_of(name) == version
