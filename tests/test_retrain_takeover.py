"""A retrain killed with kill -9 leaves its lock and its runs behind: the next retrain takes the lock over, ends
the dead job's runs that are still RUNNING (its own and those nested under it, at any depth) as KILLED, and says
in one line whose lock it took and why."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import forked
import mlflow
import pytest
from polling import wait_for
from test_registry import items_csv

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.workflows.lock import LOCK_TAG, LockHeld, RegistryLock
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.train import train


@pytest.fixture
def champion(tmp_path, experiment) -> str:
    name = f"takeover-{uuid.uuid4().hex[:8]}"
    data = items_csv(tmp_path / "items.csv", seed=3)
    outcome = train(
        build_config(
            {
                "data": data,
                "target": "kind",
                "width": "8",
                "epochs": "1",
                "progress": "false",
                "model_name": name,
                "experiment": experiment,
            }
        )
    )
    promote(PromoteConfig(model_name=name, version=outcome.registered_version, allow_first=True, experiment=experiment))
    return name


def _runs(experiment: str, query: str = "") -> list:
    return mlflow.search_runs(experiment_names=[experiment], output_format="list", filter_string=query)


@pytest.mark.integration
def test_a_retrain_killed_mid_training_is_taken_over_with_its_child_runs(champion, experiment, capsys):
    proc = forked.Popen(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "retrain",
            f"model_name={champion}",
            "force=true",
            f"experiment={experiment}",
            "epochs=1000000",
            "progress=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def training() -> list:
            assert proc.poll() is None, proc.stderr.read().decode()  # the retrain must still be running
            return _runs(experiment, "tags.`hyperflow.role` = 'train' and attributes.status = 'RUNNING'")

        child = wait_for(training, "the retrain's training run", timeout=120)[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    dead = child.data.tags["mlflow.parentRunId"]
    assert mlflow.get_run(dead).info.status == "RUNNING"  # what kill -9 leaves behind

    code = main(["retrain", f"model_name={champion}", "force=true", f"experiment={experiment}", "epochs=1"])
    err = capsys.readouterr().err
    assert code in (0, 3), err  # promoted or rejected: it ran
    taken = [line for line in err.splitlines() if "took over" in line]
    assert len(taken) == 1, err
    assert (
        f"took over the retrain lock from run {dead} on host {socket.gethostname()} pid {proc.pid}" in taken[0]
        and "its process is gone" in taken[0]
    ), taken
    assert f"ended KILLED what it left RUNNING: run {dead} and 1 run nested under it" in taken[0]
    assert mlflow.get_run(dead).info.status == "KILLED"
    assert mlflow.get_run(child.info.run_id).info.status == "KILLED"
    assert _runs(experiment, "attributes.status = 'RUNNING'") == []
    assert LOCK_TAG not in mlflow.MlflowClient().get_registered_model(champion).tags


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_holder_whose_pid_another_process_uses_now_is_taken_over(client):
    """The tag names the holder's pid and its start time: a live process with that pid, started at another time,
    is not the holder."""
    name = f"takeover-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    gone = {"token": "dead", "run_id": None, "host": socket.gethostname(), "pid": os.getpid(), "pid_started": "1"}
    client.set_registered_model_tag(
        name, LOCK_TAG, json.dumps({**gone, "acquired_at": time.time(), "expires_at": time.time() + 600})
    )
    with RegistryLock(name, settle=0.05) as lock:
        assert lock.takeover_reason == "its process is gone"
        mine = json.loads(client.get_registered_model(name).tags[LOCK_TAG])
        assert mine["pid"] == os.getpid() and mine["pid_started"] not in (None, "1")
    client.set_registered_model_tag(name, LOCK_TAG, json.dumps({**mine, "token": "other"}))  # this very process
    with pytest.raises(LockHeld, match="holds the lock"):
        RegistryLock(name, settle=0.05).acquire()


@pytest.mark.integration
def test_a_takeover_ends_the_dead_holders_nested_runs_at_any_depth(client, experiment):
    """retrain -> train -> lr_find left RUNNING, with a finished sibling and an unrelated run: only the dead
    holder's RUNNING runs are ended, whatever their depth."""
    name = f"takeover-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id

    def run(parent: str | None = None) -> str:
        return client.create_run(experiment_id, tags={"mlflow.parentRunId": parent} if parent else {}).info.run_id

    holder = run()
    trained = run(holder)
    swept = run(trained)
    promoted = run(holder)
    client.set_terminated(promoted, "FINISHED")
    unrelated = run()
    unrelated_child = run(unrelated)
    client.set_registered_model_tag(
        name,
        LOCK_TAG,
        json.dumps(
            {
                "token": "dead",
                "run_id": holder,
                "host": socket.gethostname(),
                "pid": _dead_pid(),
                "acquired_at": time.time(),
                "expires_at": time.time() + 600,
            }
        ),
    )
    with RegistryLock(name, settle=0.1) as lock:
        assert sorted(lock.ended) == sorted([holder, trained, swept])
        message = lock.takeover_message()
    assert message.startswith(f"model '{name}': took over the retrain lock from run {holder}")
    assert (
        f"(its process is gone); ended KILLED what it left RUNNING: run {holder} and 2 runs nested under it" in message
    )
    status = {r: client.get_run(r).info.status for r in (holder, trained, swept, promoted, unrelated, unrelated_child)}
    assert status == {
        holder: "KILLED",
        trained: "KILLED",
        swept: "KILLED",
        promoted: "FINISHED",
        unrelated: "RUNNING",
        unrelated_child: "RUNNING",
    }
    with RegistryLock(name, settle=0.1) as lock:  # a free lock: nothing taken over, nothing to say
        assert lock.takeover_message() is None and lock.ended == []
