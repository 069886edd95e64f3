"""Scheduled retraining: idempotent on the same data, newest file wins, one job per model (a lock kept in
MLflow, stale locks taken over), exit codes, and the schedule files with the command they all run."""

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import forked
import held_model
import mlflow
import pytest
import yaml
from polling import wait_for
from test_registry import items_csv

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.errors import UsageError
from hyperflow.tracking.registry import alias_version
from hyperflow.workflows.lock import LOCK_TAG, LockHeld, RegistryLock
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.retrain import RetrainConfig, newest_data, retrain
from hyperflow.workflows.train import train

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ROOT / "deploy" / "schedule"
EXPERIMENT = "retrain-tests"


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> dict:
    """A registered model whose champion was trained on incoming/day1.csv (in a folder of new data)."""
    folder = tmp_path_factory.mktemp("incoming")
    day1 = items_csv(folder / "day1.csv", seed=1)
    mlflow.set_experiment(EXPERIMENT)
    name = f"retrain-{uuid.uuid4().hex[:8]}"
    outcome = train(
        build_config(
            {
                "data": day1,
                "target": "kind",
                "width": "16",
                "epochs": "8",
                "lr": "0.01",
                "progress": "false",
                "model_name": name,
                "experiment": EXPERIMENT,
            }
        )
    )
    promote(PromoteConfig(model_name=name, version=outcome.registered_version, allow_first=True, experiment=EXPERIMENT))
    return {
        "name": name,
        "folder": folder,
        "day1": day1,
        "version": str(outcome.registered_version),
        "run_id": outcome.run_id,
    }


def assert_gate_decided(client, name: str, outcome, champion_before: str | None) -> None:
    """The outcome is the gate's decision and the registry shows it: the new version is the challenger;
    promoted = validation passed and champion moved to it; rejected = failed and champion left as it was."""
    tags = client.get_model_version(name, outcome.version).tags
    assert alias_version(client, name, "challenger") == outcome.version != champion_before
    if outcome.outcome == "promoted":
        assert tags["validation_status"] == "passed" and outcome.promotion.promoted
        assert alias_version(client, name, "champion") == outcome.version
    else:
        assert outcome.outcome == "rejected" and tags["validation_status"] == "failed"
        assert not outcome.promotion.promoted and alias_version(client, name, "champion") == champion_before
    assert mlflow.get_run(outcome.run_id).data.tags["hyperflow.outcome"] == outcome.outcome


def retrain_runs(name: str) -> list:
    return mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        output_format="list",
        order_by=["start_time ASC"],
        filter_string=f"tags.`hyperflow.role` = 'retrain' and tags.`hyperflow.model_name` = '{name}'",
    )


@pytest.mark.integration
def test_retrain_is_skipped_on_the_same_data_and_runs_on_new_data(champion, capsys):
    client = mlflow.MlflowClient()
    versions = len(client.search_model_versions(f"name = '{champion['name']}'"))
    config = RetrainConfig(model_name=champion["name"], data=str(champion["folder"]), experiment=EXPERIMENT)
    first = retrain(config, settle=0.1)  # the champion's own run trained these settings on these data
    assert first.outcome == "skipped" and first.data == champion["day1"]
    assert first.by_champion and first.previous_run_id == champion["run_id"]
    assert mlflow.get_run(first.run_id).data.tags["hyperflow.skipped_for"] == champion["run_id"]
    assert alias_version(client, champion["name"], "champion") == champion["version"]
    assert len(client.search_model_versions(f"name = '{champion['name']}'")) == versions  # nothing trained
    assert (
        main(["retrain", f"model_name={champion['name']}", f"data={champion['folder']}", f"experiment={EXPERIMENT}"])
        == 0
    )
    assert f"the champion's own run {champion['run_id']} already did data" in capsys.readouterr().out

    day2 = items_csv(champion["folder"] / "day2.csv", seed=2)  # newer: it wins
    later = os.stat(champion["day1"]).st_mtime + 10
    os.utime(day2, (later, later))
    (champion["folder"] / ".day3.csv.partial").write_text("being written")  # hidden: ignored
    champion_before = alias_version(client, champion["name"], "champion")
    fresh = retrain(config, settle=0.1)
    assert fresh.data == day2 and fresh.key != first.key
    assert_gate_decided(client, champion["name"], fresh, champion_before)
    children = mlflow.search_runs(
        experiment_names=[EXPERIMENT], output_format="list", filter_string=f"tags.mlflow.parentRunId = '{fresh.run_id}'"
    )
    assert sorted(r.data.tags["hyperflow.role"] for r in children) == ["promote", "train"]
    versions = len(client.search_model_versions(f"name = '{champion['name']}'"))

    again = retrain(config, settle=0.1)
    assert again.outcome == "skipped" and again.previous_run_id == fresh.run_id and not again.by_champion
    assert len(client.search_model_versions(f"name = '{champion['name']}'")) == versions  # nothing trained
    runs = retrain_runs(champion["name"])
    assert [r.data.tags["hyperflow.outcome"] for r in runs][-4:] == ["skipped", "skipped", fresh.outcome, "skipped"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_newest_data_from_a_folder_or_a_glob(tmp_path):
    old, new = tmp_path / "a.csv", tmp_path / "b.csv"
    new.write_text("x\n")
    old.write_text("x\n")
    os.utime(new, (time.time() + 5, time.time() + 5))
    (tmp_path / "notes.md").write_text("not data")
    assert newest_data(str(tmp_path)) == str(new) == newest_data(str(tmp_path / "*.csv"))
    assert newest_data("digits") == "digits" and newest_data(str(old)) == str(old)
    with pytest.raises(UsageError, match="holds no data file"):
        newest_data(str(tmp_path / "*.parquet"))


@pytest.fixture
def model(client) -> str:
    name = f"lock-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


def at_once(job, n: int) -> list:
    """Run ``job`` in ``n`` threads released together; its results, or the exceptions it raised."""
    barrier, results = threading.Barrier(n), []

    def run() -> None:
        barrier.wait()
        try:
            results.append(job())
        except Exception as exc:  # LockHeld expected; anything else fails the test's checks with its text
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_concurrent_lock_takers_exactly_one_wins(model):
    results = at_once(lambda: RegistryLock(model, settle=2.0).acquire(), 3)  # settle > any read-to-write gap here
    winners = [r for r in results if isinstance(r, RegistryLock)]
    assert len(winners) == 1 and sum(isinstance(r, LockHeld) for r in results) == 2, results
    winners[0].check()
    winners[0].release()
    assert LOCK_TAG not in mlflow.MlflowClient().get_registered_model(model).tags


def _holder(**fields) -> str:
    return json.dumps(
        {
            "token": "someone-else",
            "run_id": None,
            "host": "other-host",
            "pid": 1,
            "acquired_at": time.time(),
            "expires_at": time.time() + 600,
            **fields,
        }
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.integration
def test_stale_locks_are_taken_over_and_live_ones_are_not(model, client, experiment):
    crashed = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id  # RUNNING
    finished = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    client.set_terminated(finished, "FINISHED")
    stale = [
        _holder(expires_at=time.time() - 1, run_id=crashed),  # lease expired
        _holder(host=socket.gethostname(), pid=_dead_pid()),  # this host, process gone
        _holder(run_id=finished),
    ]  # its run ended
    for holder in stale:
        client.set_registered_model_tag(model, LOCK_TAG, holder)
        with RegistryLock(model, settle=0.1) as lock:
            assert lock.taken_over["token"] == "someone-else" and lock.stale_reason(lock.taken_over)
    assert client.get_run(crashed).info.status == "KILLED"  # the dead holder's run no longer shows RUNNING
    alive = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    client.set_registered_model_tag(model, LOCK_TAG, _holder(run_id=alive))
    with pytest.raises(LockHeld, match=f"another retrain holds the lock: run {alive} on host other-host pid 1"):
        RegistryLock(model, settle=0.1).acquire()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_taking_the_lock_leaves_no_lock(model, client, signum, cli_signals):
    """Ctrl-C or SIGTERM in the pause between writing the lock and reading it back: the tag goes too."""
    lock = RegistryLock(model, settle=60.0)  # the signal, not the pause's end, must end the pause

    def interrupt() -> None:
        wait_for(lambda: LOCK_TAG in client.get_registered_model(model).tags, "the lock's tag")
        signal.pthread_kill(threading.main_thread().ident, signum)

    helper = threading.Thread(target=interrupt)
    try:
        helper.start()
        with pytest.raises(KeyboardInterrupt):  # Terminated, for SIGTERM, is one
            lock.acquire()
    finally:
        helper.join()
    assert LOCK_TAG not in client.get_registered_model(model).tags
    fresh = RegistryLock(model, settle=0.1).acquire()
    assert fresh.taken_over is None  # the next job finds the lock free: nothing to take over
    fresh.release()


def test_a_lock_lost_to_another_job_is_noticed(model, client):
    lock = RegistryLock(model, settle=0.1).acquire()
    client.set_registered_model_tag(model, LOCK_TAG, _holder())  # taken over while we were paused
    with pytest.raises(LockHeld, match="lost the retrain lock"):
        lock.check()
    lock.release()
    assert json.loads(client.get_registered_model(model).tags[LOCK_TAG])["token"] == "someone-else"


def _copy_of_champion(champion: dict) -> str:
    """A model of its own whose champion is the one trained on day1 (what other tests did is irrelevant)."""
    client = mlflow.MlflowClient()
    name = f"retrain-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.copy_model_version(f"models:/{champion['name']}/{champion['version']}", name).version
    client.set_registered_model_alias(name, "champion", version)
    return name


@pytest.mark.integration
def test_two_retrains_at_once_one_runs_the_other_stands_aside(champion):
    """The first retrain is held inside the lock (its model factory waits for the test) while the second
    tries: the second stands aside with LockHeld and writes nothing; the first then finishes."""
    client = mlflow.MlflowClient()
    name = _copy_of_champion(champion)
    champion_before = alias_version(client, name, "champion")
    config = RetrainConfig(model_name=name, data=champion["day1"], force=True, experiment=EXPERIMENT)
    overrides = {"model": "held_model:build", "epochs": "2"}
    held_model.entered.clear()
    held_model.release.clear()
    results: list = []

    def first() -> None:
        try:
            results.append(retrain(config, overrides, settle=0.1))
        except Exception as exc:  # reported by the checks below
            results.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert held_model.entered.wait(120), results  # the first job holds the lock and is building its model
        with pytest.raises(LockHeld, match=f"model '{name}': another retrain holds the lock: run [0-9a-f]+ on host"):
            retrain(config, overrides, settle=0.1)
        assert len(retrain_runs(name)) == 1  # the second wrote no run
    finally:
        held_model.release.set()
        thread.join(300)
    (ran,) = results
    assert not isinstance(ran, Exception), ran
    assert_gate_decided(client, name, ran, champion_before)
    assert len(retrain_runs(name)) == 1 and LOCK_TAG not in client.get_registered_model(name).tags


@pytest.mark.integration
def test_retrain_by_search_runs_a_small_search_under_the_retrain_run(champion, capsys):
    client = mlflow.MlflowClient()
    name = _copy_of_champion(champion)
    config = RetrainConfig(model_name=name, data=champion["day1"], mode="search", max_evals=2, experiment=EXPERIMENT)
    champion_before = alias_version(client, name, "champion")
    outcome = retrain(config, {"epochs": 2}, settle=0.1)  # epochs given: it pins the shipped space's 20
    assert outcome.version == "2"
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("search: trial")]
    assert len(progress) == 2  # a scheduler's log shows the search's progress, a line per trial
    assert_gate_decided(client, name, outcome, champion_before)
    (searched,) = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{outcome.run_id}' and tags.`hyperflow.role` = 'search'",
    )
    assert searched.data.params["max_evals"] == "2" and searched.info.status == "FINISHED"
    trials = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{searched.info.run_id}'",
    )
    assert len(trials) == 2 and all(t.data.metrics["epochs_run"] <= 2 for t in trials)
    assert client.get_model_version(name, "2").tags["search_run_id"] == searched.info.run_id


@pytest.mark.integration
def test_sigterm_during_a_retrain_by_search_ends_every_run_killed(champion, tracking_uri):
    """The search of mode=search stops as ``hyperflow search`` does: its trials, the search run and the
    retrain run end KILLED (before, the search ran in a thread of its own and its run stayed RUNNING)."""
    name = _copy_of_champion(champion)
    proc = forked.Popen(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "retrain",
            f"model_name={name}",
            f"data={champion['day1']}",
            "mode=search",
            "max_evals=50",
            "epochs=40",
            "force=true",
            f"experiment={EXPERIMENT}",
        ],
        env=_env(tracking_uri),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    retrain_run = wait_for(lambda: next(iter(retrain_runs(name)), None), "the retrain run", timeout=120)

    def nested(run_id: str) -> list:
        return mlflow.search_runs(
            experiment_names=[EXPERIMENT], output_format="list", filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
        )

    def trial_running():
        searches = [r for r in nested(retrain_run.info.run_id) if r.data.tags.get("hyperflow.role") == "search"]
        return searches and any(r.info.status == "RUNNING" for r in nested(searches[0].info.run_id))

    try:
        wait_for(lambda: trial_running() or proc.poll() is not None, "a trial of the retrain's search", timeout=180)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    (search,) = [r for r in nested(retrain_run.info.run_id) if r.data.tags.get("hyperflow.role") == "search"]
    trials = nested(search.info.run_id)
    assert trials and not [r for r in trials if r.info.status == "RUNNING"]
    assert search.info.status == "KILLED" and mlflow.get_run(retrain_run.info.run_id).info.status == "KILLED"
    assert LOCK_TAG not in mlflow.MlflowClient().get_registered_model(name).tags


def test_retrain_while_another_holds_the_lock_exits_4(champion, capsys):
    client = mlflow.MlflowClient()
    before = len(retrain_runs(champion["name"]))
    with RegistryLock(champion["name"], settle=0.1):
        code = main(
            [
                "retrain",
                f"model_name={champion['name']}",
                f"data={champion['day1']}",
                "force=true",
                f"experiment={EXPERIMENT}",
            ]
        )
    err = capsys.readouterr().err
    assert code == 4 and f"pid {os.getpid()}" in err and socket.gethostname() in err
    assert len(retrain_runs(champion["name"])) == before  # the job stood aside: no run, no version
    assert LOCK_TAG not in client.get_registered_model(champion["name"]).tags


def test_retrain_of_a_champion_whose_files_are_gone_stops_before_training(champion, tmp_path, capsys):
    """The gate must score the champion: when its model no longer loads, nothing is trained or registered."""
    client = mlflow.MlflowClient()
    name = f"retrain-{uuid.uuid4().hex[:8]}"
    trained = train(
        build_config(
            {
                "data": champion["day1"],
                "target": "kind",
                "width": "16",
                "epochs": "2",
                "progress": "false",
                "model_name": name,
                "experiment": EXPERIMENT,
            }
        )
    )
    client.set_registered_model_alias(name, "champion", trained.registered_version)
    model_id = client.get_model_version(name, trained.registered_version).source.split("/")[-1]
    shutil.rmtree(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    code = main(["retrain", f"model_name={name}", f"data={champion['day1']}", "force=true", f"experiment={EXPERIMENT}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"cannot load version {trained.registered_version} of model '{name}'" in err
    assert len(client.search_model_versions(f"name='{name}'")) == 1 and retrain_runs(name) == []


@pytest.mark.parametrize(
    "change, message",
    [
        ("relabelled", "labels the model never learned ('BIG', 'SMALL'"),  # accuracy on them compares nothing
        ("lost_column", "the model cannot score the rows of"),
    ],
)
def test_promote_on_rows_the_model_cannot_score_is_refused(champion, tmp_path, capsys, change, message):
    """data= for another problem: one line, exit 2, no run (before: a traceback and exit 1)."""
    data = _changed_day(tmp_path, champion["day1"], change)
    before = len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
    code = main(
        [
            "promote",
            f"model_name={champion['name']}",
            f"version={champion['version']}",
            f"data={data}",
            "target=kind",
            "dry_run=true",
            f"experiment={EXPERIMENT}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["model_name=no-such-model"], "unknown model 'no-such-model'"),
        (["data=digits"], "model_name is required"),
        (["model_name={name}", "mode=grid"], "unknown mode 'grid'"),
        (["model_name={name}", "data=missing.csv"], "data 'missing.csv' not found"),
        (["model_name={name}", "epochs=0"], "epochs must be positive"),
        (["model_name={name}", "optimiser=sgd"], "unknown setting 'optimiser'"),
    ],
)
def test_retrain_bad_input_is_one_line(champion, capsys, args, message):
    before = len(retrain_runs(champion["name"]))
    code = main(["retrain", *(a.format(**champion) for a in args)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert len(retrain_runs(champion["name"])) == before


def _changed_day(folder: Path, day1: str, change: str) -> str:
    """day1's table changed the way a feed changes: a column lost or added, or the target now numbers."""
    import pandas as pd

    frame = pd.read_csv(day1)
    if change == "lost_column":
        frame = frame.drop(columns=["colour"])
    elif change == "new_column":
        frame["weight"] = frame["size"] * 2
    elif change == "numeric_target":
        frame["kind"] = frame["size"] * 1.5
    elif change == "relabelled":
        frame["kind"] = frame["kind"].str.upper()
    path = folder / f"{change}.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    "change, args, message",
    [
        ("lost_column", [], "its input columns differ from the champion's (lacks 'colour')"),
        ("new_column", [], "its input columns differ from the champion's (adds 'weight')"),
        ("numeric_target", [], "it is a regression model and the champion a classification model"),
        ("same", ["target=colour"], "it predicts 'colour' and the champion 'kind'"),
        ("relabelled", [], "its classes differ from the champion's (lacks 'big', 'small'; adds 'BIG', 'SMALL')"),
    ],
)
def test_retrain_on_data_for_another_problem_stops_before_training(champion, tmp_path, capsys, change, args, message):
    """What the champion's model could never be compared with is refused before any run, lock or version."""
    client = mlflow.MlflowClient()
    versions = len(client.search_model_versions(f"name='{champion['name']}'"))
    before = len(retrain_runs(champion["name"]))
    data = _changed_day(tmp_path, champion["day1"], change)
    code = main(["retrain", f"model_name={champion['name']}", f"data={data}", *args, f"experiment={EXPERIMENT}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert "could not replace champion version" in err and "another model_name" in err
    assert len(retrain_runs(champion["name"])) == before
    assert len(client.search_model_versions(f"name='{champion['name']}'")) == versions
    assert LOCK_TAG not in client.get_registered_model(champion["name"]).tags


# ------------------------------------------------------------------------------------ schedule files


def scheduled_commands() -> dict[str, str]:
    """The retrain command each schedule file runs."""

    def find(text: str) -> str:
        return re.search(r"mlflow run \. -e retrain [^'\"\n]*", text).group(0).strip()

    dag = ast.parse((SCHEDULE / "airflow_dag.py").read_text())
    command = next(
        ast.literal_eval(n.value)
        for n in ast.walk(dag)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "COMMAND"
    )
    cronjob = yaml.safe_load((SCHEDULE / "cronjob.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {
        "crontab": find((SCHEDULE / "crontab").read_text()),
        "systemd": find((SCHEDULE / "hyperflow-retrain.service").read_text()),
        "kubernetes": find(container["args"][0]),
        "airflow": find(command),
    }


@pytest.mark.integration
def test_schedule_files_parse_and_run_the_same_command():
    commands = scheduled_commands()
    assert len(set(commands.values())) == 1, commands
    cron = [line for line in (SCHEDULE / "crontab").read_text().splitlines() if line and line[0].isdigit()]
    assert len(cron) == 1 and len(cron[0].split()[:5]) == 5 and "flock -n" in cron[0]
    cronjob = yaml.safe_load((SCHEDULE / "cronjob.yaml").read_text())
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    compile((SCHEDULE / "airflow_dag.py").read_text(), "airflow_dag.py", "exec")
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(
            ["systemd-analyze", "verify", "hyperflow-retrain.service", "hyperflow-retrain.timer"],
            cwd=SCHEDULE,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def _env(tracking_uri: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        **extra,  # `mlflow` and `python` of this venv
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(var, None)
    return env


@pytest.mark.integration
def test_the_scheduled_command_retrains(champion, tracking_uri, tmp_path):
    """What cron, systemd, Kubernetes and Airflow run, on the champion's rows in a new file: an equal model
    passes (the champion's own file would be skipped: its run trained that already)."""
    command = scheduled_commands()["crontab"]
    name = _copy_of_champion(champion)
    same_rows = tmp_path / "day1-again.csv"  # another file (fingerprint), the same rows
    same_rows.write_text(Path(champion["day1"]).read_text() + "\n")
    env = _env(tracking_uri, HYPERFLOW_MODEL=name, HYPERFLOW_DATA=str(same_rows))
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = mlflow.search_runs(
        experiment_names=["retrain"],
        output_format="list",
        filter_string=f"tags.`hyperflow.model_name` = '{name}' and tags.`hyperflow.role` = 'retrain'",
    )
    assert run.data.tags["hyperflow.outcome"] == "promoted" and run.info.status == "FINISHED"
    assert run.data.params["resolved_data"] == str(same_rows)
