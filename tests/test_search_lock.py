"""One process works on a search run at a time (the search lock, a lease in the run's tag hyperflow.search_lock):
two resumes started together run once, the other exits 4 with one line naming the holder and writing nothing; a
search still running (here: stopped) refuses a resume; a holder killed with kill -9, or one on another host whose
lease has ended, is taken over."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import forked
import mlflow
import pytest
from polling import wait_for

from hyperflow import names
from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.workflows.search import search as run_search
from hyperflow.workflows.search_lock import SearchLock, SearchLocked

pytestmark = pytest.mark.integration  # every test here starts processes

QUICK = {"data": "wine", "epochs": "1", "progress": "false", "flush_secs": "5"}
SEARCH = {"strategy": "random", "pruner": "none", "register": "false", "parallelism": "1"}


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}


def new_search(experiment: str, max_evals: int) -> str:
    config = build_search_config({**SEARCH, "max_evals": str(max_evals)})
    return run_search(config, build_config({**QUICK, "experiment": experiment})).run_id


def stop_outside_the_store(proc: subprocess.Popen) -> None:
    """SIGSTOP ``proc`` at a moment it holds no lock on the sqlite store: stopped inside a read or a write, it would
    hold the store from everyone. The store's exclusive lock, taken here while ``proc`` runs (waiting for its
    reads and writes to end), guarantees that moment."""
    path = mlflow.get_tracking_uri().removeprefix("sqlite:///")
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as db:
        db.execute("BEGIN EXCLUSIVE")
        proc.send_signal(signal.SIGSTOP)
        db.execute("ROLLBACK")


def children(client, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'", max_results=500)


def assert_clean(client, parent: str, trials: int) -> None:
    """Trial numbers 0..trials-1 once each, nothing RUNNING, no lock left."""
    runs = children(client, parent)
    numbers = sorted(int(r.data.tags[names.TRIAL_NUMBER]) for r in runs if r.info.status == "FINISHED")
    assert numbers == list(range(trials))
    assert not [r.info.run_id for r in [*runs, client.get_run(parent)] if r.info.status == "RUNNING"]
    assert names.SEARCH_LOCK not in client.get_run(parent).data.tags


def test_two_resumes_at_once_run_once_the_other_exits_4_naming_the_holder(experiment, client, tmp_path):
    parent = new_search(experiment, 1)
    assert names.SEARCH_LOCK not in client.get_run(parent).data.tags  # released at the search's end
    # one race of two processes (three takers race in-process: test_of_lock_takers_at_once_...)
    barrier = tmp_path / "go"
    max_evals = 2
    procs = [
        forked.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("at_barrier.py")),
                str(barrier),
                "search",
                f"resume={parent}",
                f"max_evals={max_evals}",
            ],
            env=env(),
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    barrier.touch()
    results = [(p.pid, p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for _, code, _, _ in results)
    assert codes == [0, 4], results
    (winner, *_), (_, _, _, refused) = sorted(results, key=lambda r: r[1])
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and f"search run {parent} is being run by host" in lines[0], refused
    assert f"pid {winner} since " in lines[0]
    assert_clean(client, parent, max_evals)
    assert client.get_run(parent).data.tags[names.RESUMES] == "1"  # the refused one recorded no resume


def test_a_running_search_refuses_a_resume_and_once_killed_is_taken_over(experiment, client, tmp_path, capsys):
    trials = 12  # enough that the search is still in its trials once stopped, on a loaded machine too
    args = [f"{k}={v}" for k, v in {**QUICK, **SEARCH, "epochs": "3", "max_evals": str(trials)}.items()]
    proc = forked.Popen(
        [sys.executable, "-m", "hyperflow", "search", *args, f"experiment={experiment}"],
        env=env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exp = wait_for(lambda: client.get_experiment_by_name(experiment), "the experiment")

    def a_trial_started():
        assert proc.poll() is None, "the search ended before it could be stopped"
        runs = client.search_runs([exp.experiment_id])
        return any(r.data.tags.get(names.ROLE) == names.ROLE_TRIAL for r in runs) and runs

    try:
        runs = wait_for(a_trial_started, "the first trial", 120)
        stop_outside_the_store(proc)  # alive and holding the search lock, as a search busy training
        parent = next(r for r in runs if r.data.tags[names.ROLE] == names.ROLE_SEARCH).info.run_id
        before = client.get_run(parent)
        holder = json.loads(before.data.tags[names.SEARCH_LOCK])
        assert holder["pid"] == proc.pid and holder["run_id"] is None
        refused = forked.run(
            [sys.executable, "-m", "hyperflow", "search", f"resume={parent}"],
            env=env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 4, refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert f"search run {parent} is being run by host" in line and f"pid {proc.pid} since" in line
        after = client.get_run(parent)
        assert after.data.tags == before.data.tags and after.data.params == before.data.params
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    capsys.readouterr()
    assert main(["search", f"resume={parent}"]) == 0
    err = capsys.readouterr().err
    assert f"search run {parent}: took over from host" in err and f"pid {proc.pid}" in err
    assert "its process is gone" in err
    assert_clean(client, parent, trials)


def test_a_lock_from_another_host_holds_until_its_lease_ends(experiment, client, capsys):
    parent = new_search(experiment, 1)
    ended = client.get_run(parent).info.end_time
    elsewhere = {"token": "t", "run_id": None, "host": "elsewhere", "pid": 1, "acquired_at": time.time() - 60}
    client.set_tag(parent, names.SEARCH_LOCK, json.dumps({**elsewhere, "expires_at": time.time() + 600}))
    capsys.readouterr()
    assert main(["search", f"resume={parent}", "max_evals=2"]) == 4
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"search run {parent} is being run by host elsewhere pid 1 since" in line
    assert client.get_run(parent).info.end_time == ended and len(children(client, parent)) == 1
    client.set_tag(parent, names.SEARCH_LOCK, json.dumps({**elsewhere, "expires_at": time.time() - 1}))
    assert main(["search", f"resume={parent}", "max_evals=2"]) == 0
    err = capsys.readouterr().err
    assert f"search run {parent}: took over from host elsewhere pid 1" in err and "its lease expired" in err
    assert_clean(client, parent, 2)


def test_of_lock_takers_at_once_on_one_search_run_exactly_one_wins(experiment, client):
    run_id = client.create_run(client.get_experiment_by_name(experiment).experiment_id).info.run_id
    barrier, results = threading.Barrier(3), []

    def take() -> None:
        barrier.wait()
        try:
            results.append(SearchLock(run_id, settle=2.0).acquire())  # settle > any read-to-write gap here
        except SearchLocked as exc:
            results.append(exc)

    threads = [threading.Thread(target=take) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if isinstance(r, SearchLock)]
    assert len(winners) == 1 and sum(isinstance(r, SearchLocked) for r in results) == 2, results
    assert all(f"pid {os.getpid()} since" in str(r) for r in results if isinstance(r, SearchLocked))
    winners[0].check()
    winners[0].release()
    assert names.SEARCH_LOCK not in client.get_run(run_id).data.tags
    client.set_terminated(run_id)
