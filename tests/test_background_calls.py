"""BackgroundCalls, the queue a search's trial calls go through: they run in order on one thread, and a call
that fails is never swallowed: its error surfaces at the next submit, at drain or at close; the calls queued
behind it are not sent."""

from __future__ import annotations

import concurrent.futures
import threading

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from hyperflow.tracking import BackgroundCalls

MISSING_RUN = "0" * 32


class Boom(Exception):
    pass


def fail(exc: Exception) -> None:
    raise exc


def held(calls: BackgroundCalls) -> threading.Event:
    """Queue a call that blocks the worker until the returned event is set: what is queued behind it
    has surely not run, so no submit made meanwhile can see its outcome."""
    go = threading.Event()
    calls.submit(go.wait, 60)
    return go


@pytest.fixture
def calls():
    queue = BackgroundCalls()
    yield queue
    try:
        queue.close()
    except Exception:  # a test left a failure behind on purpose
        pass


def values(client: mlflow.MlflowClient, run_id: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, "m"), key=lambda m: m.step)]


@pytest.mark.integration
def test_calls_run_in_order_and_drain_waits_for_them(calls, experiment, client):
    run_id = client.create_run(mlflow.get_experiment_by_name(experiment).experiment_id).info.run_id
    go = held(calls)
    for step in range(5):
        calls.submit(client.log_metric, run_id, "m", float(step), step=step)
    assert values(client, run_id) == []  # all still queued behind the held call
    go.set()
    calls.drain()
    assert values(client, run_id) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_submit_returns_the_calls_future(calls, experiment, client):
    future = calls.submit(client.create_run, mlflow.get_experiment_by_name(experiment).experiment_id)
    assert client.get_run(future.result(timeout=60).info.run_id).info.status == "RUNNING"


def test_a_failed_mlflow_call_surfaces_at_the_next_submit(calls, client):
    go = held(calls)
    failing = calls.submit(client.set_tag, MISSING_RUN, "k", "v")  # a real store error: no such run
    go.set()
    concurrent.futures.wait([failing], timeout=60)
    with pytest.raises(MlflowException, match=MISSING_RUN):
        calls.submit(client.search_experiments)


def test_a_failure_in_the_last_call_surfaces_at_drain(calls):
    ran: list[int] = []
    boom = Boom("the last call failed")
    calls.submit(ran.append, 1)
    calls.submit(ran.append, 2)
    calls.submit(fail, boom)
    with pytest.raises(Boom) as caught:
        calls.drain()
    assert caught.value is boom and ran == [1, 2]  # drain waited for every call before it


def test_the_calls_behind_a_failure_are_not_sent(calls):
    """A call fails before anyone looks: what was queued behind it (a trial's end, say, behind its refused
    results) is not sent; the failure surfaces at the next submit and again at drain."""
    first, ran = Boom("first"), []
    go = held(calls)
    calls.submit(fail, first)
    calls.submit(ran.append, "queued behind the failure")
    last = calls.submit(ran.append, "also queued")
    go.set()
    concurrent.futures.wait([last], timeout=60)
    assert ran == []
    with pytest.raises(Boom) as at_submit:
        calls.submit(ran.append, "submitted after the failure")
    assert at_submit.value is first
    with pytest.raises(Boom) as at_drain:
        calls.drain()
    assert at_drain.value is first and ran == []


def test_close_raises_a_failure_and_stops_the_worker():
    before = set(threading.enumerate())
    calls = BackgroundCalls()
    boom = Boom("closing call failed")
    calls.submit(fail, boom)
    with pytest.raises(Boom) as caught:
        calls.close()
    assert caught.value is boom
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_a_failure_surfaces_once_the_call_has_failed_never_before(calls):
    """A submit made while the failing call is still queued does not raise (nothing to report yet); the
    failure then surfaces at drain."""
    go = held(calls)
    boom = Boom("late")
    calls.submit(fail, boom)
    calls.submit(print, end="")  # the failing call has not run: nothing to raise yet
    go.set()
    with pytest.raises(Boom) as caught:
        calls.drain()
    assert caught.value is boom
