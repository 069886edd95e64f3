"""SidecarCalls, the queue a search's calls go through when its trials train in its own process: the same
contract as BackgroundCalls (in order, a failure never swallowed, nothing sent behind it), run by a child
process on a real sqlite store; a run still being created is resolved there; the child ignores Ctrl-C and
exits once the search process is gone."""

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

from hyperflow.tracking import SidecarCalls, log_results, search_store
from hyperflow.tracking.runs import PendingRun, created_by_call

pytestmark = pytest.mark.integration  # every test here starts processes

MISSING_RUN = "0" * 32


def wait_on_fifo(path: str) -> None:
    """In the sidecar: block until the test opens and closes the FIFO ``path`` for writing."""
    with open(path) as fh:
        fh.read()


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "hold")
    os.mkfifo(path)
    return path


def release(path: str) -> None:
    with open(path, "w"):
        pass


@pytest.fixture
def calls(experiment):
    queue = SidecarCalls(search_store.executor_environment())
    yield queue
    try:
        queue.close()
    except Exception:  # a test left a failure behind on purpose
        pass


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


def test_with_two_lanes_a_runs_calls_follow_it_while_the_other_lane_is_held(fifo, experiment, client):
    """A slow call holds up only its lane: the next run is created, logged and ended on the other one, its
    calls in order there."""
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    calls = SidecarCalls(search_store.executor_environment(), lanes=2)
    try:
        held = calls.submit(wait_on_fifo, fifo)  # lane 0
        run = PendingRun(calls.submit(client.create_run, experiment_id))  # lane 1
        for step in range(3):
            last = calls.submit(log_results, run, {f"m{step}": float(step)}, {"last": str(step)})
        last.result(timeout=120)
        assert not held.done()
        data = client.get_run(run.id).data
        assert data.metrics == {"m0": 0.0, "m1": 1.0, "m2": 2.0} and data.tags["last"] == "2"
    finally:
        release(fifo)
        calls.close()


@pytest.mark.parametrize(
    "uri, lanes",
    [
        ("sqlite:///x.db", 1),
        ("postgresql://u@h/db", 1),
        ("http://127.0.0.1:5000", 2),
        ("https://mlflow.example.com", 2),
    ],
)
def test_a_tracking_server_gets_two_lanes_a_database_one(uri, lanes):
    calls = SidecarCalls({"MLFLOW_TRACKING_URI": uri})
    try:
        assert len(calls.lanes) == lanes
    finally:
        calls.close()  # nothing was sent: no process was started


def test_a_pending_run_of_a_call_never_sent_does_not_travel():
    future = Future()
    future.call_number = 7
    assert PendingRun.__reduce__(PendingRun(future)) == (created_by_call, (7,))
    future.set_result("done")
    assert PendingRun.__reduce__(PendingRun(future)) == (PendingRun, ("done",))


def test_the_sidecar_ignores_ctrl_c(calls, experiment, client):
    run_id = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    pid = calls.submit(os.getpid).result(timeout=120)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)  # the search sends what they interrupted, then closes the sidecar itself
    calls.submit(client.log_metric, run_id, "m", 1.0)
    calls.drain()
    assert [m.value for m in client.get_metric_history(run_id, "m")] == [1.0]


def test_the_sidecar_exits_when_the_search_process_is_killed(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, mlflow
        from hyperflow.tracking import SidecarCalls, search_store
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        calls = SidecarCalls(search_store.executor_environment())
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


def test_a_sidecar_that_dies_is_a_store_failure_naming_it_not_a_traceback(calls):
    """The out-of-memory killer ends the sidecar: the calls it held are lost, so the search stops as on any
    store failure (one line, its runs ended KILLED, a resume), at the next call or at the end."""
    from hyperflow.search.outcome import store_failure
    from hyperflow.tracking import StoreFailure

    pid = calls.submit(os.getpid).result(timeout=120)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(StoreFailure) as failure:
        wait_for(lambda: calls.submit(os.getpid).result(timeout=120) is None, "the dead sidecar noticed", 60)
    line = store_failure(failure.value, "file:///artifacts", "abc")
    assert line.startswith(
        "the process that sends the search's MLflow calls failed: it died (killed, e.g. by "
        "the out-of-memory killer) with the calls it had not sent yet; search run abc keeps"
    )
    with pytest.raises(StoreFailure):
        calls.drain()
