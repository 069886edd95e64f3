"""The retrain lock's heartbeat: it renews the lease while the job runs (so a job longer than its lease keeps the
lock), never writes over a lock another job took, and stops with the lock. A short lease (2 s, one beat every
2/3 s) and polling with a deadline: no fixed sleeps."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from polling import wait_for

from hyperflow.workflows.lock import LOCK_TAG, LockHeld, RegistryLock

LEASE = 2.0


@pytest.fixture
def model(client) -> str:
    name = f"beat-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


def holder(client, name: str) -> dict | None:
    raw = client.get_registered_model(name).tags.get(LOCK_TAG)
    return json.loads(raw) if raw else None


def test_the_heartbeat_renews_the_lease_past_its_first_expiry(model, client):
    threads_before = set(threading.enumerate())
    lock = RegistryLock(model, lease=LEASE, settle=0.05, client=client).acquire()
    try:
        first = holder(client, model)
        assert first["token"] == lock.holder["token"]
        renewed = wait_for(
            lambda: (h := holder(client, model)) and h["expires_at"] > first["expires_at"] and h,
            "the heartbeat to renew the lease",
        )
        assert renewed["token"] == first["token"] and renewed["acquired_at"] == first["acquired_at"]
        wait_for(lambda: time.time() > first["expires_at"] + 0.2, "the first lease to run out")
        # the lease first written has run out, the renewed one holds: another job is refused, this one holds
        with pytest.raises(LockHeld, match=f"model '{model}': another retrain holds the lock"):
            RegistryLock(model, lease=LEASE, settle=0.05, client=client).acquire()
        lock.check()
        assert holder(client, model)["token"] == first["token"]
    finally:
        lock.release()
    assert holder(client, model) is None
    # the heartbeat stopped with the lock: no thread of it is left
    assert [t for t in threading.enumerate() if t not in threads_before and t.is_alive()] == []


def test_the_heartbeat_never_writes_over_a_lock_another_job_took(model, client):
    lock = RegistryLock(model, lease=LEASE, settle=0.05, client=client).acquire()
    other = {
        "token": "someone-else",
        "run_id": None,
        "host": "other-host",
        "pid": 1,
        "acquired_at": time.time(),
        "expires_at": time.time() + 600,
    }
    try:
        client.set_registered_model_tag(model, LOCK_TAG, json.dumps(other))  # taken over while we were paused
        wait_for(lambda: lock.lost, "the heartbeat to notice the lock is gone")
        assert holder(client, model) == other  # not renewed over the other job's lock
        with pytest.raises(LockHeld, match="lost the retrain lock to run \\(starting\\) on host other-host pid 1"):
            lock.check()
    finally:
        lock.release()
    assert holder(client, model) == other  # and release leaves the other job's lock alone
