"""SidecarCalls, the queue a one-at-a-time search's calls go through when a CPU is spare: the same contract as
BackgroundCalls (in order, a failure never swallowed, nothing sent behind it), run by a child process on a real
sqlite store; a run still being created is resolved there; the child ignores Ctrl-C and SIGTERM and exits once the
search process is gone; when it dies, the search stops with one line. And when a CPU counts as spare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Future

import mlflow
import pytest
from polling import wait_for

from hyperflow import machine
from hyperflow.tracking import SidecarCalls, StoreFailure, log_results, worker_environment
from hyperflow.tracking.background_calls import PendingRun, created_by_call
from hyperflow.workflows.search_outcome import search_store_failure

MISSING_RUN = "0" * 32


def wait_on_fifo(path: str) -> None:
    """In the sidecar: block until the test opens and closes the FIFO ``path`` for writing."""
    with open(path) as fh:
        fh.read()


def release(path: str) -> None:
    with open(path, "w"):
        pass


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "hold")
    os.mkfifo(path)
    return path


@pytest.fixture
def calls(experiment):
    queue = SidecarCalls(worker_environment.executor_environment())
    yield queue
    try:
        queue.close()
    except Exception:  # a test left a failure behind on purpose
        pass


@pytest.mark.integration
def test_calls_run_in_order_in_another_process_and_a_run_in_creation_resolves_there(calls, fifo, experiment, client):
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    assert calls.submit(os.getpid).result(timeout=120) != os.getpid()
    calls.submit(wait_on_fifo, fifo)  # held: the run below is surely not created when the next call is pickled
    created = calls.submit(client.create_run, experiment_id, run_name="sidecar")
    run = PendingRun(created)
    assert PendingRun.__reduce__(run) == (created_by_call, (created.call_number,))
    for step in range(3):
        calls.submit(log_results, run, {f"m{step}": float(step)}, {"last": str(step)})
    release(fifo)
    calls.drain()
    data = client.get_run(run.id).data
    assert data.metrics == {"m0": 0.0, "m1": 1.0, "m2": 2.0} and data.tags["last"] == "2"  # in order


@pytest.mark.integration
def test_a_failed_call_surfaces_and_nothing_behind_it_is_sent(calls, fifo, experiment, client):
    run_id = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    calls.submit(wait_on_fifo, fifo)
    failing = calls.submit(client.log_metric, MISSING_RUN, "m", 1.0)
    calls.submit(client.log_metric, run_id, "m", 2.0)
    release(fifo)
    with pytest.raises(Exception, match=MISSING_RUN):
        calls.drain()
    with pytest.raises(Exception, match=MISSING_RUN):
        failing.result()
    with pytest.raises(Exception, match=MISSING_RUN):  # the next submit says so too
        calls.submit(client.log_metric, run_id, "m", 3.0)
    assert client.get_metric_history(run_id, "m") == []


def test_a_pending_run_travels_as_its_run_once_created_else_as_the_number_of_its_call():
    future = Future()
    future.call_number = 7
    assert PendingRun.__reduce__(PendingRun(future)) == (created_by_call, (7,))
    future.set_result("done")
    assert PendingRun.__reduce__(PendingRun(future)) == (PendingRun, ("done",))


@pytest.mark.integration
def test_the_sidecar_ignores_ctrl_c_and_sigterm(calls, experiment, client):
    run_id = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    pid = calls.submit(os.getpid).result(timeout=120)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)  # the search sends what they interrupted, then closes the sidecar itself
    calls.submit(client.log_metric, run_id, "m", 1.0)
    calls.drain()
    assert [m.value for m in client.get_metric_history(run_id, "m")] == [1.0]


@pytest.mark.integration
def test_the_sidecar_exits_when_the_search_process_is_killed(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, mlflow
        from hyperflow.runtime import processes
        from hyperflow.tracking import SidecarCalls, worker_environment
        processes.PRELOAD[:] = []  # a fork server that imports nothing: the sidecar here only reports its pid
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        calls = SidecarCalls(worker_environment.executor_environment())
        print(calls.submit(os.getpid).result(), flush=True)
        sys.stdin.read()  # until killed
    """)
    )
    search = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        sidecar = int(search.stdout.readline())
        os.kill(search.pid, signal.SIGKILL)
        search.wait(60)

        def gone() -> bool:
            try:
                os.kill(sidecar, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{sidecar}/stat") as fh:  # exited, not yet reaped by its parent
                return fh.read().rsplit(")", 1)[1].split()[0] == "Z"

        wait_for(gone, "the sidecar of a killed search to exit", 60)
    finally:
        search.kill()


@pytest.mark.integration
def test_a_sidecar_that_dies_is_a_store_failure_naming_it_not_a_traceback(calls):
    """The out-of-memory killer ends the sidecar: the calls it held are lost, so the search stops as on any
    store failure (one line, its runs ended KILLED, a resume), at the next call or at the end."""
    pid = calls.submit(os.getpid).result(timeout=120)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(StoreFailure) as failure:
        wait_for(lambda: calls.submit(os.getpid).result(timeout=120) is None, "the dead sidecar noticed", 60)
    line = search_store_failure(failure.value, "file:///artifacts", "abc")
    assert line.startswith(
        "the process that sends the search's MLflow calls failed: it died (killed, e.g. by "
        "the out-of-memory killer) with the calls it had not sent yet; search run abc keeps"
    )
    with pytest.raises(StoreFailure):
        calls.drain()


def write_stat(path, idle: int, busy: int) -> None:
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


@pytest.mark.parametrize(
    "idle, busy, cpus, spare",
    [
        (100, 100, 2, True),  # one of two CPUs idle: spare
        (40, 160, 2, False),  # both mostly busy (e.g. the other one runs a test or a search of its own)
        (100, 100, 1, False),  # this process may use one CPU only
        (10, 10, 2, False),  # too short a time to tell
    ],
)
def test_a_cpu_is_spare_when_one_sat_idle_since_the_command_started(tmp_path, monkeypatch, idle, busy, cpus, spare):
    stat = tmp_path / "stat"
    write_stat(stat, 1000, 1000)
    monkeypatch.setattr(machine, "PROC_STAT", stat)
    monkeypatch.setattr(machine, "_TICKS_AT_START", machine._cpu_ticks())
    write_stat(stat, 1000 + idle, 1000 + busy)
    monkeypatch.setattr(machine, "cpus", lambda: cpus)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert machine.spare_cpu() is spare


def test_without_proc_stat_no_cpu_counts_as_spare(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "PROC_STAT", tmp_path / "missing")
    assert machine.spare_cpu() is False


@pytest.mark.integration
def test_a_one_at_a_time_search_with_a_spare_cpu_records_its_trials_via_the_sidecar(experiment, client, monkeypatch):
    """The search's trials, their curves, ends and the search's own progress all reach the store when the calls
    go through the sidecar (a spare CPU, as on an idle machine), exactly as through the thread."""
    from hyperflow.config import build_config
    from hyperflow.config.search import build_search_config
    from hyperflow.tracking import sidecar
    from hyperflow.workflows.search import search

    started = []
    monkeypatch.setattr(machine, "spare_cpu", lambda: True)
    monkeypatch.setattr(sidecar.SidecarCalls, "open_store", lambda self, e: started.append(self.submit(os.getpid)))
    settings = build_search_config({"max_evals": "3", "parallelism": "1", "register": "false", "pruner": "none"})
    base = build_config({"data": "wine", "epochs": "3", "width": "16", "progress": "false", "experiment": experiment})
    outcome = search(settings, base, given={"epochs", "width", "max_evals"})
    assert len(started) == 1 and started[0].result() != os.getpid()
    trials = client.search_runs(
        [outcome.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'", max_results=10
    )
    assert sorted(r.info.status for r in trials) == ["FINISHED"] * 3
    for trial in trials:
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_loss")] == [1, 2, 3]  # epochs
        assert {"lr", "depth", "optimizer"} <= set(trial.data.params)  # the point it trained at
    assert client.get_metric_history(outcome.run_id, "best_val_loss")  # the search's progress, sent last
