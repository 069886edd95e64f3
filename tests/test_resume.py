"""Resume continues the search it resumes: the same suggestions after a kill -9, trials whose results reached
MLflow kept, settings that may change changed (any number of times), edited spaces, the model logged and
registered once, a failed model logging that leaves the trials as they finished."""

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
from stores import kill_once, ready_store, search_process

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.engine.plan import in_space
from hyperflow.engine.space import load_space
from hyperflow.errors import SearchFailed
from hyperflow.workflows.search import search as run_search

pytestmark = pytest.mark.integration  # every test here starts processes

TINY = {"width": "16", "progress": "false", "flush_secs": "5"}
SPACE = """
lr: {type: loguniform, low: 1.0e-4, high: 3.0e-2}
optimizer: {type: choice, values: [adam, adamw]}
width: {type: choice, values: [8, 16]}
epochs: 2
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def trials(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=500)


def done(client, parent_id):
    """The trials with results, by number: (run, params)."""
    runs = [r for r in trials(client, parent_id) if r.data.tags.get("hyperflow.trial_status")]
    return {int(r.data.tags["hyperflow.trial_number"]): r for r in runs}


def search(experiment, **settings):
    config = build_search_config({"strategy": "random", "pruner": "none", **settings})
    return run_search(config, build_config({**TINY, "experiment": experiment}))


def test_a_killed_search_resumes_with_the_suggestions_of_the_uninterrupted_one(tmp_path, tracking_uri):
    """kill -9 once the second trial (a preset) has started; the resume keeps what finished, runs the rest of
    the presets, then exactly the random points an uninterrupted search draws."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = ready_store(uri)
    # 30 epochs a trial: the search must still be training when the kill lands (with 10 it had once finished
    # all six trials by the time the test saw the second one start, on a loaded machine)
    space = write(tmp_path, SPACE.replace("epochs: 2", "epochs: 30"))
    args = [
        f"space={space}",
        "strategy=random",
        "max_evals=6",
        "pruner=none",
        "register=false",
        "parallelism=1",
        *[f"{k}={v}" for k, v in TINY.items()],
    ]
    proc = search_process([*args, "experiment=cut"], uri, tmp_path)

    def second_trial_running(runs) -> bool:
        started = any(r.data.tags.get("hyperflow.trial_number") == "1" for r in runs)
        return started and any(r.data.tags.get("hyperflow.trial_status") for r in runs)

    runs = kill_once(proc, client, "cut", second_trial_running, "the second trial")
    parent = next(r for r in runs if r.data.tags["hyperflow.role"] == "search").info.run_id
    before = {n: r.info.run_id for n, r in done(client, parent).items()}
    mlflow.set_tracking_uri(uri)
    try:
        assert 1 <= len(before) < 6
        assert main(["search", f"resume={parent}"]) == 0  # the recorded settings, nothing repeated
        assert main(["search", *args, "experiment=whole"]) == 0
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    whole = next(
        r
        for r in client.search_runs([client.get_experiment_by_name("whole").experiment_id])
        if r.data.tags["hyperflow.role"] == "search"
    ).info.run_id
    resumed, uninterrupted = done(client, parent), done(client, whole)
    assert sorted(resumed) == sorted(uninterrupted) == list(range(6))
    assert all(resumed[n].info.run_id == run_id for n, run_id in before.items())  # nothing finished is run again
    for number in range(6):
        assert json.loads(resumed[number].data.tags["hyperflow.trial_params"]) == json.loads(
            uninterrupted[number].data.tags["hyperflow.trial_params"]
        ), number
    assert not [r for r in trials(client, parent) if r.info.status == "RUNNING"]
    assert client.get_run(parent).info.status == "FINISHED"


def test_resumes_change_the_budget_any_number_of_times_and_keep_what_defines_the_trials(
    tmp_path, experiment, client, capsys
):
    space = write(tmp_path, SPACE)
    first = search(experiment, space=space, max_evals="2", register="false")
    second = search(experiment, resume=first.run_id, max_evals="3", early_stop="5")
    third = search(experiment, resume=first.run_id, max_evals="5")
    assert [r.number for r in third.records] == [0, 1, 2, 3, 4] and second.run_id == third.run_id == first.run_id
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert json.loads(run.data.tags["hyperflow.settings"])["max_evals"] == "5"
    assert {k: v for k, v in run.data.params.items() if k.startswith("resume.")} == {
        "resume.1.max_evals": "3",
        "resume.1.early_stop": "5",
        "resume.2.max_evals": "5",
    }
    assert run.data.params["max_evals"] == "2" and run.data.tags["hyperflow.resumes"] == "2"
    # a setting that defines the trials cannot change: one line, exit 2, the run untouched
    capsys.readouterr()
    assert main(["search", f"resume={first.run_id}", "epochs=7", f"experiment={experiment}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epochs was" in err and f"resume={first.run_id}" in err
    after = client.get_run(first.run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == run.info.end_time
    assert len(trials(client, first.run_id)) == 5


def test_a_resume_with_an_edited_space_continues_without_feeding_old_points_to_tpe(tmp_path, experiment, client):
    first = search(
        experiment, space=write(tmp_path, SPACE), strategy="tpe", max_evals="4", register="false", n_startup_jobs="2"
    )
    narrowed = (
        SPACE.replace("values: [adam, adamw]", "values: [adamw]")
        + "batch_norm: {type: choice, values: [true, false]}\n"
    )
    outcome = run_search(
        build_search_config(
            {
                "resume": first.run_id,
                "space": write(tmp_path, narrowed, "b.yaml"),
                "strategy": "tpe",
                "max_evals": "7",
                "pruner": "none",
                "n_startup_jobs": "2",
            }
        ),
        build_config({**TINY, "experiment": experiment}),
    )
    assert [r.number for r in outcome.records] == list(range(7))
    new = outcome.records[4:]
    assert all(r.params["optimizer"] == "adamw" and "batch_norm" in r.params for r in new)
    assert all("batch_norm" not in r.params for r in outcome.records[:4])  # kept, as they ran
    # what TPE learns from: the points the edited space can produce
    assert in_space(load_space(tmp_path / "b.yaml"), outcome.records) == new
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and "batch_norm" in run.data.tags["hyperflow.space"]
    assert "resume.1.space" in run.data.params


def test_model_logging_that_fails_keeps_the_best_trial_and_a_resume_logs_and_registers_it_once(
    tmp_path, experiment, client, capsys
):
    name = f"{experiment}-model"
    exp = mlflow.get_experiment_by_name(experiment)
    blocker = Path(unquote(urlparse(exp.artifact_location).path)) / "models"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory: logged models cannot be written")  # a real artifact-store failure
    with pytest.raises(SearchFailed) as failed:
        search(experiment, space=write(tmp_path, SPACE), max_evals="3", model_name=name)
    message = str(failed.value)
    assert "\n" not in message and "logging the best model failed" in message
    parent = message.split("resume=")[-1]
    runs = done(client, parent)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs.values())
    best = client.get_run(parent).data.tags["hyperflow.best_run_id"]
    assert client.search_registered_models(f"name = '{name}'") == []
    # as a kill -9 during the model logging leaves it: the best trial reopened, the search running
    client.update_run(best, status="RUNNING")
    client.update_run(parent, status="RUNNING")
    blocker.unlink()
    capsys.readouterr()
    assert main(["search", f"resume={parent}"]) == 0
    assert "registered " + name + " version 1" in capsys.readouterr().out
    assert client.get_run(best).info.status == "FINISHED" and len(trials(client, parent)) == 3
    assert client.get_run(parent).data.tags["hyperflow.best_run_id"] == best
    version = client.get_model_version_by_alias(name, "challenger")
    assert str(version.version) == "1" and version.run_id == best and version.tags["search_run_id"] == parent
    # someone moves challenger to another version; resuming the finished search changes nothing
    other = client.create_model_version(name, version.source, run_id=best)
    client.set_registered_model_alias(name, "challenger", other.version)
    assert main(["search", f"resume={parent}"]) == 0
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert str(client.get_model_version_by_alias(name, "challenger").version) == str(other.version)
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert [m.source_run_id for m in models if m.status.name == "READY"] == [best]  # logged once


def test_a_trial_whose_results_reached_mlflow_is_kept_when_its_end_never_came(tmp_path, experiment, client):
    first = search(experiment, space=write(tmp_path, SPACE), max_evals="3", register="false")
    last = done(client, first.run_id)[2]
    client.update_run(last.info.run_id, status="RUNNING")  # a kill -9 before its queued end-of-run call went out
    outcome = search(experiment, resume=first.run_id, max_evals="4")
    assert [r.run_id for r in outcome.records[:3]] == [r.run_id for r in first.records]
    assert client.get_run(last.info.run_id).info.status == "FINISHED"
    assert len(trials(client, first.run_id)) == 4


def test_pruned_trials_are_named_so_and_the_search_run_records_its_dataset(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: choice, values: [0.003, 0.002, 0.004, 1.0e-7]}\nepochs: 4\n")
    outcome = run_search(
        build_search_config(
            {
                "space": space,
                "strategy": "grid",
                "pruner": "median",
                "min_epochs": "2",
                "prune_startup_trials": "2",
                "register": "false",
            }
        ),
        build_config({**TINY, "experiment": experiment}),
    )
    names = {r.data.tags["hyperflow.trial_status"]: r.info.run_name for r in trials(client, outcome.run_id)}
    assert names["pruned"].endswith("-pruned") and not names["ok"].endswith("-pruned")
    assert client.get_run(outcome.run_id).inputs.dataset_inputs
