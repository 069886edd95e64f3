"""A request that creates a run, sent twice (MLflow's HTTP client retries it when the answer is lost, e.g. a
tracking server restarted after the write), leaves a twin nobody knows: same tags, same start, RUNNING. The
search's end, a resume and the end of every command's run find such twins and end them KILLED, tagged as
duplicates; they never count as trials."""

import json
from contextlib import suppress

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from hyperflow import names, tracking
from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.tracking import search_store
from hyperflow.workflows.search import search as run_search
from hyperflow.workflows.search_trials import TrialsSeen

TINY = {"width": "16", "epochs": "2", "progress": "false", "flush_secs": "5"}
CREATED_WITH = (
    names.ROLE,
    names.VERSION,
    names.PARENT_RUN_ID,
    names.RUN_NAME,
    names.CREATE_ID,
    names.TRIAL_NUMBER,
    names.TRIAL_PARAMS,
    names.SEARCH_RUN_ID,
    names.DATA_FINGERPRINT,
)


def twin(client: MlflowClient, run_id: str) -> str:
    """What the server makes of the request that created ``run_id`` sent a second time: a run in the same
    experiment with the same start and creating tags, left RUNNING (the client knows only the other one)."""
    run = client.get_run(run_id)
    tags = {k: v for k, v in run.data.tags.items() if k in CREATED_WITH}
    return client.create_run(
        run.info.experiment_id, start_time=run.info.start_time, run_name=tags[names.RUN_NAME], tags=tags
    ).info.run_id


def children(client: MlflowClient, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.`{names.PARENT_RUN_ID}` = '{parent}'", max_results=500)


def lr_find_run(client: MlflowClient, parent: str) -> str:
    return next(r.info.run_id for r in children(client, parent) if r.data.tags[names.ROLE] == names.ROLE_LR_FIND)


def assert_ended_as_twins(client: MlflowClient, made: dict[str, str]) -> None:
    """Each twin (``made``: twin id -> the run its command went on with) ended KILLED, named a duplicate."""
    for twin_id, original in made.items():
        run = client.get_run(twin_id)
        assert run.info.status == "KILLED", (twin_id, run.data.tags.get(names.ROLE))
        assert run.data.tags[names.DUPLICATE_OF] == original
        assert "sent twice" in run.data.tags[names.ORPHANED]
        name = run.info.run_name.removesuffix("-duplicate")  # the original's name, as it was created
        assert run.info.run_name.endswith("-duplicate") and client.get_run(original).info.run_name.startswith(name)


def assert_one_run_per_trial(client: MlflowClient, parent: str, count: int) -> None:
    runs = children(client, parent)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    numbers = [int(r.data.tags[names.TRIAL_NUMBER]) for r in runs if names.TRIAL_STATUS in r.data.tags]
    assert sorted(numbers) == list(range(count))


def search_settings(**settings: str) -> dict[str, str]:
    return {"strategy": "random", "pruner": "none", "parallelism": "1", "register": "false", **settings}


@pytest.mark.integration
def test_the_search_end_ends_the_twins_of_its_runs_and_counts_them_as_no_trial(
    experiment, client, tmp_path, monkeypatch
):
    """The creating requests of the search run, of its LR range test and of trial 1 are sent twice (the twins
    appear once trial 1 has finished)."""
    made: dict[str, str] = {}
    seen = TrialsSeen.__call__

    def making_twins(self, record, trained):
        seen(self, record, trained)
        if record.number == 1:
            parent = client.get_run(record.run_id).data.tags[names.PARENT_RUN_ID]
            made.update({twin(client, r): r for r in (parent, lr_find_run(client, parent), record.run_id)})

    monkeypatch.setattr(TrialsSeen, "__call__", making_twins)
    outcome = run_search(
        build_search_config(search_settings(max_evals="3", lr_bounds="auto")),
        build_config({**TINY, "experiment": experiment}),
    )
    assert len(made) == 3
    assert_ended_as_twins(client, made)
    assert client.get_run(outcome.run_id).info.status == "FINISHED"
    assert_one_run_per_trial(client, outcome.run_id, 3)
    table = pd.read_csv(client.download_artifacts(outcome.run_id, "trials.csv", str(tmp_path)))
    assert sorted(table["trial"]) == [0, 1, 2] and not set(table["run_id"]) & set(made)
    assert client.get_run(outcome.run_id).data.tags[names.BEST_RUN_ID] not in made


@pytest.mark.integration
def test_a_resume_ends_the_twins_a_stopped_search_left_and_a_twin_is_no_search_to_resume(experiment, client, capsys):
    first = run_search(
        build_search_config(search_settings(max_evals="2", lr_bounds="auto")),
        build_config({**TINY, "experiment": experiment}),
    )
    parent = first.run_id
    # the store as a search leaves it when it was stopped after its requests were sent twice
    made = {twin(client, run_id): run_id for run_id in (parent, lr_find_run(client, parent), first.records[0].run_id)}
    search_twin = next(t for t, original in made.items() if original == parent)
    capsys.readouterr()
    assert main(["search", f"resume={search_twin}"]) == 2  # found by its creating tag
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"hyperflow search resume={parent}" in err and "duplicate" in err
    assert client.get_run(search_twin).info.status == "RUNNING"  # nothing written

    assert main(["search", f"resume={parent}", "max_evals=3"]) == 0
    assert_ended_as_twins(client, made)
    assert client.get_run(parent).info.status == "FINISHED"
    assert_one_run_per_trial(client, parent, 3)
    capsys.readouterr()
    assert main(["search", f"resume={search_twin}"]) == 2  # ended: found by its mark
    assert f"hyperflow search resume={parent}" in capsys.readouterr().err


@pytest.mark.integration
def test_a_resume_ends_a_trial_killed_in_flight_with_the_reason(experiment, client):
    """A trial's run left RUNNING without results and without a twin (its search was killed mid-trial)."""
    first = run_search(
        build_search_config(search_settings(max_evals="2")), build_config({**TINY, "experiment": experiment})
    )
    killed = client.create_run(
        first.experiment_id,
        run_name="trial-002",
        tags={names.ROLE: names.ROLE_TRIAL, names.PARENT_RUN_ID: first.run_id, names.TRIAL_NUMBER: "2"},
    ).info.run_id
    run_search(
        build_search_config(search_settings(resume=first.run_id, max_evals="3")),
        build_config({**TINY, "experiment": experiment}),
    )
    run = client.get_run(killed)
    assert run.info.status == "KILLED" and "stopped before this trial had results" in run.data.tags[names.ORPHANED]
    assert names.DUPLICATE_OF not in run.data.tags and run.info.run_name == "trial-002"
    assert_one_run_per_trial(client, first.run_id, 3)


def test_a_trial_whose_worker_died_fails_once_and_its_twin_ends_as_a_duplicate(experiment, client):
    exp = client.get_experiment_by_name(experiment).experiment_id
    parent = client.create_run(exp, tags={names.ROLE: names.ROLE_SEARCH}).info.run_id
    trial = client.create_run(
        exp,
        run_name="trial-003",
        tags={
            names.ROLE: names.ROLE_TRIAL,
            names.PARENT_RUN_ID: parent,
            names.TRIAL_NUMBER: "3",
            names.RUN_NAME: "trial-003",
            names.CREATE_ID: "c0ffee",
        },
    ).info.run_id
    made = {twin(client, trial): trial}
    client.log_param(trial, "lr", "0.01")  # what the trial sent before its worker died
    assert search_store.end_lost_trial(exp, parent, 3, "killed by signal 9 during the trial") == trial
    run = client.get_run(trial)
    assert run.info.status == "FAILED" and run.data.tags[names.TRIAL_STATUS] == names.TRIAL_FAILED
    assert_ended_as_twins(client, made)
    assert names.TRIAL_STATUS not in client.get_run(next(iter(made))).data.tags


def test_a_version_registered_twice_by_one_request_is_registered_once(experiment, client):
    """The twin version (same run, same creating tag) goes; a version of the same run registered by another
    request (another tag, or none) stays."""
    from hyperflow.tracking.model_logging import delete_twin_versions

    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id).info.run_id
    name = f"twice-{run[:8]}"
    client.create_registered_model(name)
    source = f"runs:/{run}/model"
    made = [
        client.create_model_version(name, source, run, tags=tags).version
        for tags in ({names.CREATE_ID: "a"}, {names.CREATE_ID: "a"}, {names.CREATE_ID: "b"}, {})
    ]
    assert delete_twin_versions(name, run, str(made[1]), "a") == [str(made[0])]
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'")) == sorted(
        int(v) for v in made[1:]
    )


@pytest.mark.parametrize("ending", ["finished", "failed"])
def test_every_commands_run_ends_its_twins(experiment, client, ending):
    """train, lr_find, promote and retrain open their runs with tracked_run: a twin of the run (and of a
    nested one) made while the command ran ends with it, whether the command finished or failed."""
    with suppress(RuntimeError):
        with tracking.tracked_run(names.ROLE_RETRAIN, experiment=experiment, run_name="retrain-x") as outer:
            with tracking.tracked_run(
                names.ROLE_PROMOTE, parent_run_id=outer.info.run_id, run_name="promote-x"
            ) as inner:
                made = {twin(client, inner.info.run_id): inner.info.run_id}
            made[twin(client, outer.info.run_id)] = outer.info.run_id
            if ending == "failed":
                raise RuntimeError("the command failed")
    assert_ended_as_twins(client, made)
    assert client.get_run(outer.info.run_id).info.status == ("FINISHED" if ending == "finished" else "FAILED")


@pytest.mark.integration
def test_through_a_server_whose_answers_to_creations_are_lost_nothing_stays_running(
    tmp_path, tracking_uri, monkeypatch
):
    """A real `mlflow server` behind a proxy that loses the answer to the creation of the search run, of trial 1,
    of the best model's version and of a train run after the server wrote them: MLflow's client sends each
    again and the server makes twins. The commands end them: nothing stays RUNNING, one run per trial, one
    version."""
    from dropping_proxy import DroppingProxy
    from services import SqliteServer

    server = SqliteServer(tmp_path).start().ready()
    port = server.port
    lost: set[str] = set()

    def drop(method: str, path: str, body: bytes) -> bool:
        if not path.endswith(("/runs/create", "/model-versions/create")):
            return False
        tags = {t["key"]: t["value"] for t in json.loads(body).get("tags", [])}
        what = "version" if "model-versions" in path else tags.get(names.ROLE, "") + tags.get(names.TRIAL_NUMBER, "")
        if what in ("search", "trial1", "version", "train") and what not in lost:
            lost.add(what)
            return True
        return False

    proxy = DroppingProxy(port, drop)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    mlflow.set_tracking_uri(proxy.uri)
    try:
        assert (
            main(
                [
                    "search",
                    "experiment=lost",
                    "max_evals=3",
                    *(
                        f"{k}={v}"
                        for k, v in {**TINY, **search_settings(register="true", model_name="lost-model")}.items()
                    ),
                ]
            )
            == 0
        )
        assert main(["train", "experiment=lost", *(f"{k}={v}" for k, v in TINY.items())]) == 0
    finally:
        mlflow.set_tracking_uri(tracking_uri)
        proxy.close()
    try:
        client = MlflowClient(f"http://127.0.0.1:{port}")
        assert lost == {"search", "trial1", "version", "train"} and len(proxy.dropped) == 4
        runs = client.search_runs([client.get_experiment_by_name("lost").experiment_id], max_results=100)
        assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
        twins = {
            r.data.tags[names.ROLE] + r.data.tags.get(names.TRIAL_NUMBER, "")
            for r in runs
            if names.DUPLICATE_OF in r.data.tags
        }
        assert twins == {"search", "trial1", "train"}
        parent = next(
            r.info.run_id for r in runs if r.data.tags[names.ROLE] == names.ROLE_SEARCH and r.info.status == "FINISHED"
        )
        assert_one_run_per_trial(client, parent, 3)
        versions = client.search_model_versions("name = 'lost-model'")
        assert (
            len(versions) == 1
            and client.get_model_version_by_alias("lost-model", "challenger").version == versions[0].version
        )
    finally:
        server.kill()
