"""An objective of the user's own (``objective=package.module:function``, ``hyperflow.search(fn, space=...)``):
one child run per trial with its params and reported metrics, pruning through ``hyperflow.TrialPruned``,
failures, stop rules, the best logged model registered, worker processes, resume after kill -9, and bad
``objective=`` values refused in one line before any run. Real sqlite stores; the objectives are in
tests/user_objectives.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import user_objectives
from stores import kill_once, ready_store, search_process

import hyperflow
from hyperflow.cli import main
from hyperflow.errors import UsageError

TESTS = str(Path(__file__).resolve().parent)
LINEAR_SPACE = {"lr": {"type": "loguniform", "low": 0.05, "high": 0.5}, "epochs": 5}


def trial_runs(client: mlflow.MlflowClient, search_run_id: str) -> dict[int, mlflow.entities.Run]:
    experiment_id = client.get_run(search_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{search_run_id}'")
    return {int(r.data.tags["hyperflow.trial_number"]): r for r in runs if "hyperflow.trial_number" in r.data.tags}


def write_space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.integration  # over a second: searches that train
def test_a_pytorch_loop_through_the_python_api(experiment, client) -> None:
    result = hyperflow.search(
        user_objectives.torch_loop, space=LINEAR_SPACE, max_evals=3, pruner="none", parallelism=1,
        experiment=experiment,
    )  # fmt: skip
    assert len(result.trials) == 3 and result.stop_reason == "budget"
    assert result.best_value == min(t.loss for t in result.trials) and 0.05 <= result.best_params["lr"] <= 0.5
    runs = trial_runs(client, result.run_id)
    assert sorted(runs) == [0, 1, 2]
    best = runs[next(t.number for t in result.trials if t.run_id == result.best_run_id)]
    assert best.info.status == "FINISHED" and best.data.tags["hyperflow.trial_status"] == "ok"
    assert best.data.tags["hyperflow.role"] == "trial" and best.data.params["epochs"] == "5"
    assert [m.step for m in client.get_metric_history(best.info.run_id, "value")] == [1, 2, 3, 4, 5]
    assert client.get_metric_history(best.info.run_id, "train_loss")
    assert best.data.metrics["loss"] == pytest.approx(result.best_value)
    search_run = client.get_run(result.run_id)
    assert search_run.data.tags["hyperflow.best_run_id"] == result.best_run_id
    assert search_run.data.params["objective"] == "user_objectives:torch_loop"
    assert search_run.data.tags["hyperflow.model_status"] == "none logged"
    assert "logged no model" in result.summary and result.registered is None


@pytest.mark.integration  # over a second: searches that train
def test_a_scikit_learn_objective_through_the_cli_registers_the_model_the_best_trial_logged(
    tmp_path, experiment, client, capsys
) -> None:
    space = write_space(tmp_path, "alpha: {type: loguniform, low: 0.001, high: 10.0}\n")
    name = f"ridge-{experiment}"
    args = ["search", "objective=user_objectives:sklearn_ridge", f"space={space}", "max_evals=3", "parallelism=1"]
    assert main([*args, f"experiment={experiment}", f"model_name={name}"]) == 0
    out = capsys.readouterr().out
    assert f"model: registered {name} version 1, alias challenger" in out
    version = client.get_model_version_by_alias(name, "challenger")
    search_run = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`hyperflow.role` = 'search'"
    )[0]
    assert version.run_id == search_run.data.tags["hyperflow.best_run_id"]
    best = client.get_run(version.run_id)
    assert best.data.params["n_train"] == "300" and "r2" in best.data.metrics  # logged in the active run
    assert float(best.data.tags["hyperflow.trial_loss"]) == best.data.metrics["loss"]


@pytest.mark.integration  # over a second: searches that train
def test_a_pytorch_loop_through_the_cli_and_a_scikit_learn_objective_through_the_python_api(
    tmp_path, experiment, client, capsys
) -> None:
    space = write_space(tmp_path, "lr: {type: loguniform, low: 0.05, high: 0.5}\nepochs: 3\n")
    args = ["search", "objective=user_objectives:torch_loop", f"space={space}", "max_evals=2", "parallelism=1"]
    assert main([*args, "pruner=none", f"experiment={experiment}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hyperflow search: 2 trials (2 ok, 0 pruned, 0 failed; 1 at once) in ")
    assert ", 6 steps; stopped by budget\n" in out
    name = f"ridge-api-{experiment}"
    result = hyperflow.search(
        user_objectives.sklearn_ridge, space={"alpha": {"type": "loguniform", "low": 0.001, "high": 10.0}},
        max_evals=2, parallelism=1, model_name=name, experiment=experiment,
    )  # fmt: skip
    assert result.registered == (name, "1") and result.model_uri.startswith("models:/")
    assert client.get_model_version_by_alias(name, "challenger").run_id == result.best_run_id
    assert result.best_value == pytest.approx(client.get_run(result.best_run_id).data.metrics["loss"])


def test_a_pruned_trial_gets_trial_pruned_and_cleans_up(experiment, client) -> None:
    space = {"x": {"type": "choice", "values": [0.1, 0.9]}}
    result = hyperflow.search(
        "user_objectives:constant", space=space, strategy="grid", pruner="median", min_epochs=1,
        prune_startup_trials=1, prune_patience=1, parallelism=1, experiment=experiment,
    )  # fmt: skip
    first, second = result.trials
    assert (first.status, first.epochs) == ("ok", 4)
    assert (second.status, second.loss, second.epochs) == ("pruned", 0.9, 1)
    run = trial_runs(client, result.run_id)[1]
    assert run.data.tags["hyperflow.trial_status"] == "pruned" and run.data.metrics["cleaned_up"] == 1
    assert run.data.tags["mlflow.runName"] == "trial-001-pruned" and run.info.status == "FINISHED"


@pytest.mark.integration  # over a second: searches that train
def test_a_failing_trial_fails_alone_and_a_search_whose_trials_all_fail_stops(experiment, client) -> None:
    space = {"x": {"type": "choice", "values": [0.2, 0.8, 0.4]}}
    result = hyperflow.search(
        user_objectives.fails_above_half, space=space, strategy="grid", parallelism=1, experiment=experiment
    )
    assert [t.status for t in result.trials] == ["ok", "failed", "ok"] and result.best_value == 0.2
    failed = trial_runs(client, result.run_id)[1]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["hyperflow.trial_reason"] == "ValueError: x=0.8 is too big"
    result = hyperflow.search(
        user_objectives.always_fails, space=space, strategy="grid", max_consecutive_failures=2, parallelism=1,
        experiment=experiment,
    )  # fmt: skip
    assert len(result.trials) == 2 and result.best_value is None and "2 trials failed in a row" in result.stop_reason
    assert client.get_run(result.run_id).info.status == "FINISHED"


def test_bad_objectives_and_settings_are_one_line_before_any_run(tmp_path, capsys) -> None:
    space = write_space(tmp_path, "x: {type: uniform, low: 0, high: 1}\n")
    experiment = "never-made"
    refusals = {
        "objective=no_such_module:fn": "objective 'no_such_module:fn': cannot import module 'no_such_module'",
        "objective=user_objectives:nope": "objective 'user_objectives:nope': module 'user_objectives' has no function",
        "objective=user_objectives": "objective 'user_objectives' must look like package.module:function",
    }
    for arg, message in refusals.items():
        assert main(["search", arg, f"space={space}", f"experiment={experiment}"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["search", "objective=user_objectives:constant", f"space={space}", "epochs=5"]) == 2
    assert "epochs is a setting of hyperflow's trainer" in capsys.readouterr().err
    assert main(["search", "objective=user_objectives:constant", f"experiment={experiment}"]) == 2
    assert "needs a search space" in capsys.readouterr().err
    with pytest.raises(UsageError, match="did you mean 'max_evals'"):
        hyperflow.search(user_objectives.constant, space={"x": 1.0}, maxevals=3)
    with pytest.raises(UsageError, match="max_evals"):
        hyperflow.search(user_objectives.constant, space={"x": 1.0}, max_evals=0)
    assert mlflow.MlflowClient().get_experiment_by_name(experiment) is None  # nothing was written


@pytest.mark.integration  # over a second: searches that train
def test_a_function_of_main_runs_its_trials_here_unless_workers_are_asked_for(experiment, client) -> None:
    """Worker processes cannot import a notebook's or a script's __main__: parallelism=auto runs such a function's
    trials one at a time in this process, parallelism=2 is refused in one line."""

    def here(params: dict, trial) -> float:
        return user_objectives.pid_of_worker(params, trial)

    here.__module__ = "__main__"
    space = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    with pytest.raises(UsageError, match=r"defined in __main__ .* or pass parallelism=1"):
        hyperflow.search(here, space=space, parallelism=2, experiment=experiment)
    result = hyperflow.search(here, space=space, max_evals=2, experiment=experiment)
    assert {client.get_run(t.run_id).data.metrics["pid"] for t in result.trials} == {os.getpid()}


@pytest.mark.integration
def test_a_search_in_the_users_own_run_nests_under_it_and_each_trial_is_the_active_run(experiment, client) -> None:
    """Inside ``with mlflow.start_run()``: the search is a child of the user's run, every trial a child of the
    search and the active run while it runs (what it logs lands there); the user's run is active again after."""

    def logs_where_it_runs(params: dict, trial) -> float:
        mlflow.set_tag("active_run", mlflow.active_run().info.run_id)
        return params["x"]

    with mlflow.start_run() as own:
        result = hyperflow.search(
            logs_where_it_runs, space={"x": {"type": "uniform", "low": 0, "high": 1}}, max_evals=2, parallelism=1
        )
        assert mlflow.active_run().info.run_id == own.info.run_id
    assert client.get_run(result.run_id).data.tags["mlflow.parentRunId"] == own.info.run_id
    runs = trial_runs(client, result.run_id)
    assert sorted(runs) == [0, 1]
    assert all(r.data.tags["active_run"] == r.info.run_id and r.info.status == "FINISHED" for r in runs.values())


def test_a_trial_run_opened_while_another_run_is_active_names_its_own_parent(experiment, client) -> None:
    """A trial's run is a child of the search it belongs to even when this thread's active run is another one;
    that run is active again once the trial's ends."""
    from hyperflow import tracking

    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    search = client.create_run(experiment_id).info.run_id
    with mlflow.start_run() as other:
        with tracking.active_child_run("trial", experiment_id, search, "trial-000", {}) as run_id:
            assert mlflow.active_run().info.run_id == run_id
        assert mlflow.active_run().info.run_id == other.info.run_id
    trial = client.get_run(run_id)
    assert trial.data.tags["mlflow.parentRunId"] == search and trial.info.status == "FINISHED"


@pytest.mark.integration
def test_trials_at_once_run_a_module_objective_in_worker_processes(experiment, client) -> None:
    space = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    result = hyperflow.search(
        "user_objectives:pid_of_worker", space=space, max_evals=4, parallelism=2, experiment=experiment
    )
    runs = trial_runs(client, result.run_id)
    assert sorted(runs) == [0, 1, 2, 3] and all(r.data.tags["hyperflow.trial_status"] == "ok" for r in runs.values())
    pids = {r.data.metrics["pid"] for r in runs.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    with pytest.raises(UsageError, match=r"cannot be pickled .* or pass parallelism=1"):
        hyperflow.search(lambda params, trial: 0.0, space=space, parallelism=2, experiment=experiment)


@pytest.mark.integration
def test_a_killed_objective_search_resumes(tmp_path, tracking_uri, monkeypatch) -> None:
    """kill -9 while trial 2 runs; the resume keeps trials 0 and 1, ends trial 2's run KILLED and runs 2 and 3."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = ready_store(uri)
    space = write_space(tmp_path, "x: {type: uniform, low: 0, high: 1}\n")
    hold = tmp_path / "hold"
    monkeypatch.setenv("HOLD_FILE", str(hold))
    args = ["objective=user_objectives:waits_at_trial_two", f"space={space}", "max_evals=4", "parallelism=1"]
    path = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = search_process([*args, "pruner=none", "experiment=cut"], uri, tmp_path, PYTHONPATH=path)

    def trial_two(runs) -> bool:
        return any(r.data.tags.get("hyperflow.trial_number") == "2" for r in runs)

    runs = kill_once(proc, client, "cut", trial_two, "trial 2")
    parent = next(r for r in runs if r.data.tags["hyperflow.role"] == "search").info.run_id
    before = {n: r.info.run_id for n, r in trial_runs(client, parent).items() if n < 2}
    hold.touch()
    mlflow.set_tracking_uri(uri)
    try:
        assert main(["search", f"resume={parent}"]) == 0
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    runs = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    done = {int(r.data.tags["hyperflow.trial_number"]): r for r in runs if r.data.tags.get("hyperflow.trial_status")}
    assert sorted(done) == [0, 1, 2, 3] and all(done[n].info.run_id == run_id for n, run_id in before.items())
    killed = [r for r in runs if r.data.tags.get("hyperflow.orphaned")]
    assert len(killed) == 1 and killed[0].info.status == "KILLED"
    assert json.loads(client.get_run(parent).data.tags["hyperflow.settings"])["max_evals"] == "4"
    assert client.get_run(parent).info.status == "FINISHED"


@pytest.mark.integration  # over a second: searches that train
def test_budget_stops_at_its_units_of_work_and_a_resume_counts_those_used(experiment, client) -> None:
    """Trials of 4 steps each: budget=6 runs trial 0 whole and stops trial 1 at its 2nd step; a resume with
    budget=10 counts those 6 and stops trial 2 at its 4th."""
    space = {"n": 4, "x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    common = {"pruner": "none", "parallelism": 1, "experiment": experiment, "register": False}
    first = hyperflow.search(user_objectives.steps, space=space, budget=6, **common)
    assert [(t.status, t.epochs) for t in first.trials] == [("ok", 4), ("pruned", 2)]
    assert first.trials[1].reason == "budget" and first.stop_reason == "budget: 6 of 6 units of work used"
    assert "6 of budget=6 steps" in first.summary.splitlines()[0]
    assert client.get_run(first.run_id).data.metrics["units_used"] == 6
    resumed = hyperflow.search(user_objectives.steps, resume=first.run_id, budget=10)
    assert [t.epochs for t in resumed.trials] == [4, 2, 4] and resumed.run_id == first.run_id
    assert client.get_run(first.run_id).data.metrics["units_used"] == 10


@pytest.mark.integration  # over a second: searches that train
def test_budget_counts_the_trainers_epochs(tmp_path, experiment, client, capsys) -> None:
    """hyperflow's trainer: an epoch is a unit; 3-epoch trials and budget=7 stop the third trial after 1 epoch."""
    space = write_space(tmp_path, "lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\nepochs: 3\n")
    args = ["search", f"space={space}", "budget=7", "pruner=none", "parallelism=1", "register=false", "width=16"]
    assert main([*args, "progress=false", f"experiment={experiment}"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("hyperflow search: 3 trials (2 ok, 1 pruned, 0 failed; 1 at once) in ")
    assert first.endswith(" s, 7 of budget=7 epochs; stopped by budget: 7 of 7 units of work used")
    search_run = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`hyperflow.role` = 'search'"
    )[0]
    assert search_run.data.metrics["units_used"] == 7
    assert search_run.data.tags["hyperflow.stop_reason"] == "budget: 7 of 7 units of work used"


@pytest.mark.integration
def test_trials_at_once_share_the_budget(experiment, client) -> None:
    """Two workers, trials of 4 steps, budget=10: the steps of the trials in flight count as they are made, so
    the search stops at 10 units (one more at most: each worker may make its last step at once)."""
    space = {"n": 4, "x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    result = hyperflow.search(
        user_objectives.steps, space=space, budget=10, pruner="none", parallelism=2, register=False,
        experiment=experiment,
    )  # fmt: skip
    used = sum(t.epochs for t in result.trials)
    assert 10 <= used <= 11 and result.stop_reason.startswith("budget: ")
    assert client.get_run(result.run_id).data.metrics["units_used"] == used
    assert any(t.reason == "budget" for t in result.trials)


def test_an_error_that_cannot_travel_to_another_process_keeps_its_type_and_message_once() -> None:
    """What a trial's worker raises goes back to the search pickled; one that cannot be keeps its one line."""
    from hyperflow.tracking.faults import portable

    class Local(Exception):  # a class of a function's own: pickle cannot find it by name
        pass

    travelled = portable(Local("bad input\nsecond line"))
    assert isinstance(travelled, RuntimeError) and str(travelled) == "Local: bad input"
    plain = ValueError("as it is")
    assert portable(plain) is plain
