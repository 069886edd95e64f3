"""Search rules on the local backend, each in a small real search (digits, 1-4 epochs, a few trials): the stop
rules early_stop and loss_threshold (grid and hyperopt loops), lr_bounds=auto, ASHA and Hyperband pruning, the parameter
importance artifacts, and a resumed TPE search fed the restored history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.workflows.search import search as run_search

pytestmark = pytest.mark.integration  # every test here starts processes

TINY = {"width": "32", "progress": "false", "flush_secs": "5", "schedule": "constant"}
# after one epoch at width 32 (constant schedule): lr 1e-6 leaves val_loss at ~2.30, lr 3e-3 brings it to ~1.6
SLOW, GOOD = 1.0e-6, 0.003


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def search(experiment: str, base: dict | None = None, **settings: str):
    config = build_search_config(
        {"pruner": "none", "register": "false", "seed_presets": "false", "parallelism": "1", **settings}
    )  # one trial at a time: the rules are checked in trial order
    return run_search(config, build_config({**TINY, "epochs": "1", **(base or {}), "experiment": experiment}))


def children(client, parent_id: str) -> list:
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=200)


def early_stop_holds(losses: list[float], patience: int) -> bool:
    """The rule: the best loss so far came `patience` or more trials ago."""
    best_at = max(i for i, loss in enumerate(losses) if loss == min(losses))
    return len(losses) - 1 - best_at >= patience


# ------------------------------------------------------------------------------------------ stop rules


def test_early_stop_ends_a_grid_after_that_many_trials_without_improvement(tmp_path, experiment, client):
    space = write(tmp_path, f"lr: {{type: choice, values: [{GOOD}, {SLOW}, 2.0e-6, 3.0e-6, 4.0e-6]}}\n")
    outcome = search(experiment, space=space, strategy="grid", early_stop="2")
    assert [r.params["lr"] for r in outcome.records] == [GOOD, SLOW, 2.0e-6]  # best first, then two worse
    assert outcome.stop_reason == "early_stop: 2 trials without improvement"
    assert len(children(client, outcome.run_id)) == 3
    assert client.get_run(outcome.run_id).data.tags["hyperflow.stop_reason"] == outcome.stop_reason


def test_early_stop_ends_a_random_search_at_the_first_trial_the_rule_holds(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-6, high: 1.0e-2}\n")
    outcome = search(experiment, space=space, strategy="random", early_stop="1", max_evals="10")
    losses = [r.loss for r in outcome.records]
    assert outcome.stop_reason == "early_stop: 1 trials without improvement" and len(losses) < 10
    # stopped at the first trial after which the rule held, not before and not later
    assert early_stop_holds(losses, 1)
    assert not any(early_stop_holds(losses[:n], 1) for n in range(1, len(losses)))
    assert len(children(client, outcome.run_id)) == len(losses)


def test_loss_threshold_ends_a_grid_at_the_first_trial_below_it(tmp_path, experiment, client):
    space = write(tmp_path, f"lr: {{type: choice, values: [{SLOW}, {GOOD}, 0.002, 0.001]}}\n")
    outcome = search(experiment, space=space, strategy="grid", loss_threshold="2.0")
    assert [r.params["lr"] for r in outcome.records] == [SLOW, GOOD]
    assert outcome.records[0].loss > 2.0 >= outcome.records[1].loss
    assert outcome.stop_reason == "loss_threshold" and outcome.best.params["lr"] == GOOD
    assert len(children(client, outcome.run_id)) == 2


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_loss_threshold_ends_a_hyperopt_search_after_the_trial_that_met_it(strategy, tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n")
    outcome = search(experiment, space=space, strategy=strategy, loss_threshold="100", max_evals="5")
    assert outcome.stop_reason == "loss_threshold" and len(outcome.records) == 1
    assert len(children(client, outcome.run_id)) == 1
    assert client.get_run(outcome.run_id).data.tags["hyperflow.stop_reason"] == "loss_threshold"


# ------------------------------------------------------------------------------------------ lr_bounds=auto


def test_lr_bounds_auto_searches_lr_within_the_range_test_s_range(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-7, high: 10.0}\n")
    outcome = search(experiment, space=space, strategy="random", lr_bounds="auto", max_evals="3")
    runs = children(client, outcome.run_id)
    (finder,) = [r for r in runs if r.data.tags["hyperflow.role"] == "lr_find"]  # the range test, nested
    params = client.get_run(outcome.run_id).data.params
    low, high = float(params["lr_bounds.low"]), float(params["lr_bounds.high"])
    # schedule=constant: the range itself (onecycle would widen the top)
    assert low == pytest.approx(finder.data.metrics["lr_range_min"])
    assert high == pytest.approx(finder.data.metrics["lr_range_max"])
    assert 1.0e-7 < low < high < 10.0
    trials = [r for r in runs if r.data.tags["hyperflow.role"] == "trial"]
    assert len(trials) == 3 and all(low <= float(t.data.params["lr"]) <= high for t in trials)


@pytest.mark.parametrize("error", ["ValueError", "PermissionError"])
def test_a_model_failing_the_range_test_of_lr_bounds_auto_is_one_line_exit_1_and_no_run_left_running(
    error, tmp_path, experiment, client, monkeypatch, capsys
):
    """The range test that sets the bounds trains the user's model too: its error (an OSError of its own
    included, not taken for the store failing) is one line naming it and where it was raised, exit 1; the
    range test's run and the search's end FAILED with that reason."""
    from test_search import PICKY_MODEL

    from hyperflow.cli import main

    module = f"picky_bounds_{error.lower()}"
    (tmp_path / f"{module}.py").write_text(PICKY_MODEL.replace("ERROR = ValueError", f"ERROR = {error}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-7, high: 10.0}\n")
    capsys.readouterr()
    code = main(
        [
            "search",
            f"space={space}",
            "lr_bounds=auto",
            "max_evals=2",
            "register=false",
            "parallelism=1",
            f"model={module}:build",
            "batch_size=16",
            "progress=false",
            f"experiment={experiment}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    line = next(i for i, text in enumerate(PICKY_MODEL.splitlines(), 1) if "raise ERROR" in text)
    reason = (
        f"the LR range test raised {error}: batches of more than 8 rows are refused (at {module}.py:{line} in forward)"
    )
    assert err == f"hyperflow search: error: {reason}"
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.data.tags["hyperflow.role"] for r in runs) == ["lr_find", "search"]
    assert all(r.info.status == "FAILED" and r.data.tags["hyperflow.failure_reason"] == reason for r in runs)


# ------------------------------------------------------------------------------------------ ASHA


def test_asha_prunes_a_hopeless_trial_at_its_first_rung(tmp_path, experiment, client):
    """min_epochs=1, reduction_factor=2: rungs at epochs 1, 2, 4. The first two trials have no or one peer at
    each rung (fewer than 2: no ranking); the third, far behind both at epoch 1, stops there."""
    space = write(tmp_path, f"lr: {{type: choice, values: [{GOOD}, 0.002, 1.0e-7]}}\nepochs: 4\n")
    outcome = search(experiment, space=space, strategy="grid", pruner="asha", min_epochs="1", reduction_factor="2")
    first, second, hopeless = outcome.records
    assert (first.status, first.epochs, second.status, second.epochs) == ("ok", 4, "ok", 4)
    assert (hopeless.status, hopeless.epochs) == ("pruned", 1) and "epoch 1" in hopeless.reason
    run = client.get_run(hopeless.run_id)
    assert run.data.tags["hyperflow.trial_status"] == "pruned" and run.info.status == "FINISHED"
    assert run.info.run_name.endswith("-pruned")
    assert [m.step for m in client.get_metric_history(hopeless.run_id, "val_loss")] == [1]
    assert outcome.best.params["lr"] in (GOOD, 0.002)


def test_hyperband_prunes_in_the_eager_bracket_and_lets_the_patient_one_run(tmp_path, experiment, client):
    """min_epochs=1, reduction_factor=2, 4 epochs: 3 brackets (first rungs at epochs 1, 2, 4); trials 0-5 fall
    in brackets 0, 1, 0, 2, 1, 0. Trial 3, hopeless, is in the patient bracket and runs every epoch; trial 5,
    as hopeless, is in the eager one, behind both of its bracket's trials at epoch 1, and stops there."""
    lrs = [GOOD, 0.002, 0.0025, 1.0e-7, 0.0015, 2.0e-7]
    space = write(tmp_path, "lr: {type: choice, values: [0.003, 0.002, 0.0025, 1.0e-7, 0.0015, 2.0e-7]}\nepochs: 4\n")
    outcome = search(experiment, space=space, strategy="grid", pruner="hyperband", min_epochs="1", reduction_factor="2")
    assert [r.params["lr"] for r in outcome.records] == lrs
    assert [(r.status, r.epochs) for r in outcome.records] == [("ok", 4)] * 5 + [("pruned", 1)]
    assert "epoch 1" in outcome.records[5].reason
    assert client.get_run(outcome.records[5].run_id).data.tags["hyperflow.trial_status"] == "pruned"


# ------------------------------------------------------------------------------------------ importance


def test_parameter_importance_is_logged_and_ranks_the_parameter_that_matters(tmp_path, experiment, client):
    """lr spans five decades and decides the loss; a dropout of 0 or 1e-9 changes nothing."""
    space = write(
        tmp_path, "lr: {type: loguniform, low: 1.0e-7, high: 1.0e-2}\ndropout: {type: choice, values: [0.0, 1.0e-9]}\n"
    )
    outcome = search(experiment, space=space, strategy="random", max_evals="8")
    assert sum(r.status == "ok" for r in outcome.records) >= 5
    paths = {a.path for a in client.list_artifacts(outcome.run_id)} | {
        a.path for a in client.list_artifacts(outcome.run_id, "plots")
    }
    assert {"parameter_importance.csv", "plots/parameter_importance.png"} <= paths
    folder = tmp_path / "artifacts"
    folder.mkdir()
    png = Path(client.download_artifacts(outcome.run_id, "plots/parameter_importance.png", str(folder)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    table = pd.read_csv(client.download_artifacts(outcome.run_id, "parameter_importance.csv", str(folder)))
    assert list(table.columns) == ["parameter", "importance", "std"]
    assert sorted(table["parameter"]) == ["dropout", "lr"] and table["parameter"].iloc[0] == "lr"
    assert table["importance"].iloc[0] > 0.5 > table["importance"].iloc[1]


def test_importance_counts_a_choice_as_much_as_the_same_information_as_a_number():
    """A two-way choice decides the loss. Permuted as one parameter it scores what the same choice given as a
    0/1 number scores (one-hot columns permuted one at a time would each leave the other telling the answer,
    about halving it); lr and a flag, which change nothing, score ~0."""
    from hyperflow.engine.importance import parameter_importance

    rng = np.random.default_rng(0)
    n = 60
    optimizer = rng.choice(["adam", "sgd"], n)
    params = pd.DataFrame(
        {"optimizer": optimizer, "lr": 10 ** rng.uniform(-4, -1, n), "flag": rng.choice([True, False], n)}
    )
    losses = pd.Series(np.where(optimizer == "sgd", 1.0, 0.2) * np.exp(0.01 * rng.normal(size=n)))
    as_choice = parameter_importance(params, losses).set_index("parameter")["importance"]
    as_number = parameter_importance(params.assign(optimizer=(optimizer == "sgd").astype(float)), losses).set_index(
        "parameter"
    )["importance"]
    assert as_choice.index[0] == "optimizer" and as_choice["optimizer"] > 0.3
    assert as_choice["optimizer"] == pytest.approx(as_number["optimizer"])
    assert (as_choice.drop("optimizer").abs() < 0.05).all()


def test_no_importance_with_fewer_than_five_finished_trials(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    outcome = search(experiment, space=space, strategy="random", max_evals="3")
    paths = {a.path for a in client.list_artifacts(outcome.run_id)} | {
        a.path for a in client.list_artifacts(outcome.run_id, "plots")
    }
    assert "plots/search_progress.png" in paths and "trials.csv" in paths
    assert "parameter_importance.csv" not in paths and "plots/parameter_importance.png" not in paths


# ------------------------------------------------------------------------------------------ TPE resume


def test_a_resumed_model_based_search_is_fed_the_restored_history(tmp_path, experiment, client):
    """n_startup_jobs=2: from the third trial on the model (TPE) uses the history. A search cut at two
    trials and resumed to four proposes the points the uninterrupted four-trial search proposed, which it can
    only do if the model sees the two restored trials (without them it would draw from the prior again)."""
    space = write(
        tmp_path, "lr: {type: loguniform, low: 1.0e-5, high: 1.0e-1}\nwidth: {type: choice, values: [8, 16, 32]}\n"
    )
    common = {"space": space, "strategy": "tpe", "n_startup_jobs": "2"}
    whole = search(experiment, **common, max_evals="4")
    cut = search(experiment, **common, max_evals="2")
    resumed = search(experiment, resume=cut.run_id, max_evals="4")
    assert resumed.run_id == cut.run_id and [r.number for r in resumed.records] == [0, 1, 2, 3]
    assert [r.loss for r in resumed.records[:2]] == [r.loss for r in whole.records[:2]]  # same history
    assert [r.params for r in resumed.records] == [r.params for r in whole.records]
    children_params = [
        json.loads(r.data.tags["hyperflow.trial_params"])
        for r in sorted(children(client, cut.run_id), key=lambda r: int(r.data.tags["hyperflow.trial_number"]))
    ]
    assert children_params == [r.params for r in whole.records]
    # the control: a draw from the prior for trial 2 (what the model does with no history) is another point,
    # so the equality above comes from the history
    prior = search(experiment, **{**common, "n_startup_jobs": "3"}, max_evals="3")
    assert prior.records[2].params != whole.records[2].params


def test_a_resumed_bohb_search_proposes_what_the_uninterrupted_one_did(tmp_path, experiment, client):
    """strategy=bohb with ASHA pruning (rungs at epochs 1 and 2 of 2): from the third trial on, TPE is fitted on
    the highest epoch that two trials reached, pruned trials' first epoch included. A search cut at three trials
    and resumed to six proposes the points of the uninterrupted six-trial search: the model is fed the restored
    curves as the uninterrupted search had them."""
    space = write(
        tmp_path,
        "lr: {type: loguniform, low: 1.0e-6, high: 1.0e-1}\nwidth: {type: choice, values: [8, 16, 32]}\nepochs: 2\n",
    )
    common = {"space": space, "strategy": "bohb", "n_startup_jobs": "2", "pruner": "asha", "min_epochs": "1"}
    common["reduction_factor"] = "2"
    whole = search(experiment, **common, max_evals="6")
    cut = search(experiment, **common, max_evals="3")
    resumed = search(experiment, **common, resume=cut.run_id, max_evals="6")
    assert resumed.run_id == cut.run_id and [r.number for r in resumed.records] == list(range(6))
    assert [r.params for r in resumed.records] == [r.params for r in whole.records]
    assert [(r.status, r.epochs) for r in resumed.records] == [(r.status, r.epochs) for r in whole.records]
    assert "pruned" in [r.status for r in whole.records[:3]]  # a partial curve among those the model is fed


def test_a_local_resume_runs_a_trial_killed_in_flight_again_under_its_number(tmp_path, experiment, client):
    """Local trials run one at a time, so the one killed in flight is the last: its number (and its suggestion)
    comes again, as the uninterrupted search ran it; the leftover run ends KILLED."""
    space = write(tmp_path, "lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    whole = search(experiment, space=space, strategy="random", max_evals="3")
    first = search(experiment, space=space, strategy="random", max_evals="2")
    killed = client.create_run(
        first.experiment_id,
        run_name="trial-002",
        tags={"mlflow.parentRunId": first.run_id, "hyperflow.role": "trial", "hyperflow.trial_number": "2"},
    ).info.run_id
    resumed = search(experiment, resume=first.run_id, max_evals="3")
    assert [r.number for r in resumed.records] == [0, 1, 2] and resumed.records[2].run_id != killed
    assert resumed.records[2].params == whole.records[2].params
    assert client.get_run(killed).info.status == "KILLED"
