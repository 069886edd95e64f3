"""Trials at once on one machine (``backend=local parallelism=N``): real worker processes, a real sqlite store.

The parallel path keeps the serial path's promises: one child run per trial under the search run, unique
trial numbers, failures recorded and the search going on, stop rules, the best model logged from the
worker's weights, Ctrl-C / SIGTERM ending every run KILLED, a kill -9 leaving no process behind, and resume.
"""

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import forked
import mlflow
import pytest
from polling import wait_for
from stores import ready_store

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config, trials_at_once
from hyperflow.engine import workers
from hyperflow.workflows import search as search_workflow
from hyperflow.workflows.search import search as run_search

TINY = {"data": "digits", "epochs": "3", "batch_size": "64", "progress": "false", "width": "16"}
SPACE = """
lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
optimizer: {type: choice, values: [adam, adamw]}
width: {type: choice, values: [8, 16]}
"""


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def children(client, outcome):
    runs = client.search_runs([outcome.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'", max_results=500)
    return [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]


def overlapping(runs) -> bool:
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_parallelism_auto_is_the_cores_capped_by_the_budget():
    assert trials_at_once(build_search_config({}), cores=8) == 8
    assert trials_at_once(build_search_config({"max_evals": "3"}), cores=8) == 3
    assert trials_at_once(build_search_config({"parallelism": "2"}), cores=8) == 2
    assert build_search_config({}).parallelism == "auto"
    with pytest.raises(Exception, match=r"parallelism=.*whole number or auto"):
        build_search_config({"parallelism": "many"})


@pytest.mark.integration
def test_trials_run_at_once_in_workers_nested_under_the_search(tmp_path, experiment, client):
    settings = build_search_config(
        {"space": write(tmp_path, SPACE), "max_evals": "6", "parallelism": "2", "pruner": "none", "register": "false"}
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    runs = children(client, outcome)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.tags["hyperflow.trial_number"]) for r in runs) == list(range(6))
    assert overlapping(runs), "no two trials ran at the same time"
    assert sorted(r.number for r in outcome.records) == list(range(6))
    best = min((r for r in outcome.records if r.loss is not None), key=lambda r: r.loss)
    assert outcome.best.number == best.number and outcome.test_metrics["test_accuracy"] > 0.3
    # the best model came from the worker's weights: the logged model scores as the trial did
    steps = [m.value for m in sorted(client.get_metric_history(outcome.run_id, "best_val_loss"), key=lambda m: m.step)]
    assert steps == sorted(steps, reverse=True) and steps[-1] == pytest.approx(best.loss)


@pytest.mark.integration
def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: choice, values: [0.001, 1.0e+6]}\noptimizer: {type: choice, values: [sgd]}\n")
    settings = build_search_config(
        {
            "space": space,
            "strategy": "grid",
            "parallelism": "2",
            "pruner": "none",
            "register": "false",
            "seed_presets": "false",
        }
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    statuses = {r.params["lr"]: r.status for r in outcome.records}
    assert statuses == {0.001: "ok", 1e6: "failed"}
    runs = {float(r.data.params["lr"]): r.info.status for r in children(client, outcome)}
    assert runs == {0.001: "FINISHED", 1e6: "FAILED"}


@pytest.mark.integration
def test_stop_rules_end_a_parallel_search(tmp_path, experiment):
    settings = build_search_config(
        {
            "space": write(tmp_path, SPACE),
            "max_evals": "40",
            "parallelism": "2",
            "loss_threshold": "100",
            "register": "false",
        }
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    assert outcome.stop_reason.startswith("loss_threshold")
    assert len(outcome.records) <= 3  # the first result stops it; at most the trials then in flight finish


@pytest.mark.integration
def test_ctrl_c_raised_inside_a_worker_stops_the_search(tmp_path, experiment, client, monkeypatch, capsys):
    """A KeyboardInterrupt from the trial's own code in a worker stops the search as Ctrl-C would: exit 130,
    every run KILLED, nothing left waiting."""
    from hyperflow.cli import main

    module = f"worker_ctrl_c_{tmp_path.name[-8:].replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        import multiprocessing
        import torch

        def build(input_shape, output_size, **kwargs):
            if multiprocessing.parent_process() is not None:  # in a worker, not the search's own check
                raise KeyboardInterrupt
            return torch.nn.Linear(input_shape[0], output_size)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(
        [
            "search",
            f"model={module}:build",
            f"space={write(tmp_path, SPACE)}",
            "max_evals=4",
            "parallelism=2",
            "progress=false",
            "register=false",
            f"experiment={experiment}",
        ]
    )
    assert code == 130
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert runs and {r.info.status for r in runs} == {"KILLED"}
    assert "hyperflow search resume=" in capsys.readouterr().err


def _raise(exc):
    raise exc


def _queue_a_failing_call():
    """In a worker: what a trial's end calls do when the store fails after the trial has returned."""
    import sqlite3

    from hyperflow import tracking
    from hyperflow.workflows import search_trial

    search_trial._calls = search_trial._calls or tracking.BackgroundCalls()
    search_trial._calls.submit(_raise, sqlite3.OperationalError("disk I/O error"))


@pytest.mark.integration
@pytest.mark.parametrize("after", ["next trial", "last trial"])
def test_a_worker_call_that_fails_after_its_trial_returned_still_surfaces(tmp_path, after):
    """A worker sends a trial's results and end on its background thread while the search goes on: their
    failure stops the worker's next trial, or, after its last one, the search when it closes the workers."""
    from hyperflow.engine.trial import Trial
    from hyperflow.tracking import StoreFailure
    from hyperflow.workflows.search_trial import TrainObjective

    objective = TrainObjective(build_config(TINY), "0", "parent", where="worker")
    objective.env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    pool = workers.WorkerPool(1)
    try:
        pool.warm(objective)
        pool.lanes[0].submit(_queue_a_failing_call).result(timeout=120)
        if after == "next trial":
            pool.submit("next", objective, Trial(0, {}))  # the failure is raised before the trial would start
            ((_tag, future),) = pool.finished(block=True, timeout=120)
            with pytest.raises(StoreFailure, match="disk I/O error"):
                future.result()
    finally:
        if after == "last trial":
            with pytest.raises(workers.WorkerFailed, match="disk I/O error"):
                pool.close()
        else:
            pool.close()


@pytest.mark.integration
def test_workers_started_early_stop_when_the_search_fails_before_its_trials(tmp_path, experiment, monkeypatch):
    """The workers start (and load the data) while the search records its settings; a failure there leaves
    no worker process behind."""
    started, pools, warm = [], [], workers.WorkerPool.warm

    def warming(pool, *args):
        pools.append(pool)
        warm(pool, *args)

    def fail(job, run_id):
        started.extend(pools[0]._all_processes())
        raise RuntimeError("settings could not be recorded")

    monkeypatch.setattr(workers.WorkerPool, "warm", warming)
    monkeypatch.setattr(search_workflow, "record_settings", fail)
    settings = build_search_config(
        {"space": write(tmp_path, SPACE), "max_evals": "4", "parallelism": "2", "register": "false"}
    )
    with pytest.raises(RuntimeError, match="settings could not be recorded"):
        run_search(settings, build_config({**TINY, "experiment": experiment}))
    assert len(started) == 2 and not [p for p in started if p.is_alive()]


def _modules():
    return sorted(sys.modules)


@pytest.mark.integration
def test_children_come_from_a_fork_server_that_exits_at_once(tmp_path):
    """The fork server's last preload (hyperflow.runtime.fork_server) froze its heap, which its children
    inherit, and made its own exit skip the interpreter's teardown (it holds the command's stdout open)."""
    import gc

    pool = workers.WorkerPool(1)
    try:
        assert pool.lanes[0].submit(gc.get_freeze_count).result(timeout=120) > 100_000
        assert "hyperflow.runtime.fork_server" in pool.lanes[0].submit(_modules).result(timeout=120)
    finally:
        pool.close()


def test_pruner_sees_curves_that_arrive_while_a_trial_runs(tmp_path):
    curves = str(tmp_path / "curves.jsonl")
    peers = workers.PeerCurves([(0, [0.5, 0.4])], curves)
    assert list(peers) == [(0, [0.5, 0.4])]
    with open(curves, "a") as fh:
        fh.write("[2, [0.3, 0.2]]\n[1, [0.9")  # the second line is still being written
    assert list(peers) == [(0, [0.5, 0.4]), (2, [0.3, 0.2])] and len(peers) == 2
    with open(curves, "a") as fh:
        fh.write(", 0.8]]\n")
    assert list(peers) == [(0, [0.5, 0.4]), (2, [0.3, 0.2]), (1, [0.9, 0.8])]


@pytest.mark.integration
def test_a_script_without_a_main_guard_runs_a_parallel_search(tmp_path):
    """The workers never re-run the caller's script (which would start the search again in each). The
    search's own process builds no optimizer (its space check and the best model need none), so it never
    imports torch._dynamo (~1 s of a core that the workers need)."""
    script = tmp_path / "search_script.py"
    script.write_text(
        textwrap.dedent(f"""
        import mlflow
        from hyperflow.config import build_config
        from hyperflow.config.search import build_search_config
        from hyperflow.workflows.search import search as run_search
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        settings = build_search_config({{"space": {write(tmp_path, SPACE)!r}, "max_evals": "3",
                                        "parallelism": "2", "register": "false"}})
        outcome = run_search(settings, build_config({TINY!r}))
        import sys
        print("trials", len(outcome.records), "dynamo", "torch._dynamo" in sys.modules)
    """)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    done = forked.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trials 3 dynamo False") == 1


def _search_process(tmp_path, *extra, rules=("strategy=random", "pruner=none")):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env["MLFLOW_TRACKING_URI"] = uri
    args = [
        *rules,
        "max_evals=40",
        "register=false",
        "experiment=par",
        "parallelism=2",
        f"space={write(tmp_path, SPACE)}",
        *[f"{k}={v}" for k, v in TINY.items()],
        "epochs=20",  # long enough to be caught training; a resume trains its trials with it too
        *extra,
    ]
    client = ready_store(uri)
    proc = forked.Popen(
        [sys.executable, "-m", "hyperflow", "search", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # Ctrl-C as from a terminal (tests/forked.py), whatever the test runner inherited
    return proc, client


def _runs(client):
    exp = client.get_experiment_by_name("par")
    return client.search_runs([exp.experiment_id], max_results=500) if exp else []


def _two_trials_running(client):
    return (
        len([r for r in _runs(client) if r.data.tags.get("hyperflow.role") == "trial" and r.info.status == "RUNNING"])
        >= 2
    )


def _worker_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the fork server, its workers)."""
    out = forked.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    tree = [tuple(map(int, line.split())) for line in out.splitlines() if line.strip()]
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in tree if pp == parent]
        found += kids
        frontier += kids
    return found


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            state = open(f"/proc/{pid}/stat").read().split()[2]
            if state != "Z":
                alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT])  # SIGTERM: tests/test_search.py, with the default parallelism
def test_an_interrupt_ends_every_run_killed_and_stops_the_workers(tmp_path, sig):
    proc, client = _search_process(tmp_path)
    try:
        wait_for(lambda: _two_trials_running(client) or proc.poll() is not None, "two trials running", 240)
        pids = _worker_pids(proc.pid)
        sent_ms = time.time() * 1000
        proc.send_signal(sig)  # the search process only, as `kill -INT` would: it relays the stop to the workers
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    runs = _runs(client)
    parent = next(r for r in runs if r.data.tags["hyperflow.role"] == "search")
    assert f"hyperflow search resume={parent.info.run_id}" in err
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parent.info.status == "KILLED"
    # the trials in flight end KILLED: none trains on to FINISHED after the signal (one seen running may have
    # finished just before it, and its successor then started: so at least one KILLED, not always two)
    trials = [r for r in runs if r.data.tags["hyperflow.role"] == "trial"]
    assert [r for r in trials if r.info.status == "KILLED"]
    assert not [r for r in trials if r.info.status == "FINISHED" and r.info.end_time > sent_ms + 1000]
    wait_for(lambda: not _alive(pids), "the worker processes to exit", 60)


@pytest.mark.integration
def test_a_search_killed_with_9_leaves_no_worker_and_resumes(tmp_path):
    """With BOHB's sampler under Hyperband's brackets: the pruned trials' curves and the brackets come back from
    the store."""
    bohb = ("strategy=bohb", "pruner=hyperband", "min_epochs=1", "n_startup_jobs=2")
    proc, client = _search_process(tmp_path, rules=bohb)
    try:
        wait_for(lambda: _two_trials_running(client) or proc.poll() is not None, "two trials running", 240)
        pids = _worker_pids(proc.pid)
        assert pids, "no worker processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    wait_for(lambda: not _alive(pids), "the orphaned workers to stop", 60)
    runs = _runs(client)
    trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
    # the workers ended the trials they were running (KILLED) before they went
    assert not [r for r in trials if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r.data.tags["hyperflow.role"] == "search")
    resumed, _ = _search_process(tmp_path, f"resume={parent.info.run_id}", "max_evals=4", rules=bohb)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    trials = [r for r in _runs(client) if r.data.tags.get("hyperflow.role") == "trial"]
    done = [r for r in trials if r.data.tags.get("hyperflow.trial_status") in ("ok", "pruned")]
    numbers = [int(r.data.tags["hyperflow.trial_number"]) for r in trials]
    assert len(numbers) == len(set(numbers))  # numbers of trials killed in flight are not used again
    assert len(done) >= 4 and not [r for r in _runs(client) if r.info.status == "RUNNING"]


@pytest.mark.integration
def test_a_worker_killed_mid_trial_fails_only_its_trial_and_the_search_goes_on(tmp_path, experiment, client):
    """The out-of-memory killer (or a crash in native code) ends one worker: its trial fails with the reason
    and its run ends FAILED, the other worker's trial finishes, a new worker takes the next trial."""
    import threading

    settings = build_search_config(
        {
            "space": write(tmp_path, SPACE),
            "max_evals": "3",
            "parallelism": "2",
            "pruner": "none",
            "register": "false",
            "seed_presets": "false",
        }
    )
    base = build_config({**TINY, "epochs": "40", "experiment": experiment})
    killed: list[int] = []

    def kill_one_worker_once_both_train() -> None:
        def both_training():
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
            trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
            return len(trials) == 2  # a worker creates its trial's run, then trains 40 epochs

        wait_for(both_training, "two trials training", 180, every=0.01)
        from multiprocessing import forkserver

        pid = _worker_pids(forkserver._forkserver._forkserver_pid)[0]  # the fork server's children: the workers
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_worker_once_both_train, daemon=True)
    killer.start()
    outcome = run_search(settings, base)
    killer.join(5)
    assert killed
    assert sorted(r.status for r in outcome.records) == ["failed", "ok", "ok"]
    lost = next(r for r in outcome.records if r.status == "failed")
    assert (
        lost.reason == "its worker process was killed by SIGKILL (the out-of-memory killer sends it) during the trial"
    )
    runs = children(client, outcome)
    assert len(runs) == sum(bool(r.run_id) for r in outcome.records) >= 2
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the worker is killed mid-training, as a rule; on a loaded machine it may have just taken the third trial
    # and not yet created its run: then there is none to end
    if lost.run_id:
        failed = client.get_run(lost.run_id)
        assert failed.info.status == "FAILED" and failed.data.tags["hyperflow.trial_reason"] == lost.reason
    assert client.get_run(outcome.run_id).info.status == "FINISHED"


def test_trials_whose_closing_calls_a_dead_worker_lost_are_ended_from_the_search_records(experiment, client):
    """A worker that dies between trials takes its last trial's queued closing calls with it: once the workers
    have exited, the search logs what it holds of those trials and ends their runs as they finished; a run
    the search has no record of (a trial in flight elsewhere) is left alone."""
    from hyperflow.engine.trial import TrialRecord
    from hyperflow.tracking import search_store

    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parent = client.create_run(experiment_id, run_name="search").info.run_id

    def trial_run(number):
        tags = {"mlflow.parentRunId": parent, "hyperflow.trial_number": str(number), "hyperflow.role": "trial"}
        return client.create_run(experiment_id, tags=tags).info.run_id

    ok, failed, unknown = trial_run(0), trial_run(1), trial_run(2)
    records = [
        TrialRecord(0, ok, {"lr": 0.01}, "ok", 0.25, 3, [0.4, 0.3, 0.25]),
        TrialRecord(1, failed, {"lr": 9.0}, "failed", None, 1, [], "non-finite loss"),
    ]
    assert sorted(search_store.end_unended_trials(experiment_id, parent, records)) == sorted([ok, failed])
    done = client.get_run(ok)
    assert done.info.status == "FINISHED" and done.data.metrics["best_val_loss"] == 0.25
    assert done.data.tags["hyperflow.trial_status"] == "ok"
    assert done.data.tags["hyperflow.val_loss_history"] == "[0.4, 0.3, 0.25]"
    gone = client.get_run(failed)
    assert gone.info.status == "FAILED" and gone.data.tags["hyperflow.trial_reason"] == "non-finite loss"
    assert gone.info.run_name == "trial-001-failed"
    assert client.get_run(unknown).info.status == "RUNNING"
    assert search_store.end_unended_trials(experiment_id, parent, records) == []  # nothing left to end
