"""A lease lock kept in MLflow itself, in one tag (a registered model's or a run's), so it holds against a shared
tracking server and not only on one machine. The policy (which tag, the lease, the messages, the exit code) is the
caller's: the retrain lock (:mod:`hyperflow.workflows.lock`) and the search lock
(:mod:`hyperflow.workflows.search_lock`).

The tag holds JSON ``{token, run_id, host, pid, pid_started, acquired_at, expires_at}`` (``pid_started``: the
process's start time, so that a pid used again by another process is not taken for the holder). MLflow has no
conditional write, so acquiring is write, pause ``settle`` seconds, read back, and keep the lock only if the token
read is ours: of writers that overlap within the pause exactly one sees its own token. A heartbeat thread renews the
lease every ``lease / 3`` seconds. Another job may take the lock over once the lease has expired, its holder's run
(if it names one) is no longer RUNNING, or (same host) its process is gone; the runs it left RUNNING (its own and
any nested under it) are then ended KILLED. Limits: two writers further apart than ``settle`` are serialised by the
read-before-write, not by the store; a holder paused longer than its lease loses the lock, which :meth:`Lease.check`
reports. Fails closed: when the tag cannot be read, the lock is neither taken nor taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Protocol

from hyperflow.errors import LeaseHeld
from hyperflow.runtime.processes import alive, process_identity
from hyperflow.tracking import registry, registry_writes
from hyperflow.tracking.registry import Client, is_not_found, registry_error
from hyperflow.tracking.run_calls import end_run
from hyperflow.tracking.runs import MlflowError

log = logging.getLogger(__name__)


class TagStore(Protocol):
    """Where a lease lives: one tag, read, written and deleted."""

    def read(self) -> str | None: ...

    def write(self, value: str) -> None: ...

    def delete(self) -> None: ...


class ModelTag:
    """A registered model's tag."""

    def __init__(self, client: Client, name: str, key: str) -> None:
        self.client, self.name, self.key = client, name, key

    def read(self) -> str | None:
        return registry.model_tag(self.client, self.name, self.key)

    def write(self, value: str) -> None:
        registry_writes.set_model_tag(self.client, self.name, self.key, value)

    def delete(self) -> None:
        registry_writes.delete_model_tag(self.client, self.name, self.key)


class RunTag:
    """A run's tag."""

    def __init__(self, client: Client, run_id: str, key: str) -> None:
        self.client, self.run_id, self.key = client, run_id, key

    def read(self) -> str | None:
        return self.client.get_run(self.run_id).data.tags.get(self.key)

    def write(self, value: str) -> None:
        self.client.set_tag(self.run_id, self.key, value)

    def delete(self) -> None:
        self.client.delete_tag(self.run_id, self.key)


def parse_holder(raw: str | None) -> dict[str, Any] | None:
    """A holder as the tag keeps it; None when free (or unreadable: treated as free)."""
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None


class Lease:
    """``with Lease(store):`` holds the lease kept in ``store``, or raises what :meth:`held` makes (LeaseHeld)."""

    def __init__(
        self, store: TagStore, *, lease: float = 600.0, settle: float = 1.0, client: Client | None = None
    ) -> None:
        self.store, self.lease, self.settle = store, lease, settle
        self.client = client or registry.default_client()
        self.holder: dict[str, Any] = {
            "token": uuid.uuid4().hex,
            "run_id": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_started": process_identity(os.getpid())[1],
            "acquired_at": time.time(),
        }
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.taken_over: dict[str, Any] | None = None  # the stale holder this lock replaced
        self.takeover_reason: str | None = None  # why that holder no longer counted
        self.ended: list[str] = []  # its runs (and nested runs) left RUNNING that this lock ended KILLED

    def held(self, holder: dict[str, Any], lost: bool = False) -> LeaseHeld:
        """The error for a lease another job holds (``lost``: took from this one); the policy words it."""
        return LeaseHeld(f"held by host {holder.get('host')} pid {holder.get('pid')}", holder)

    # ------------------------------------------------------------------ store
    def read(self) -> dict[str, Any] | None:
        return parse_holder(self.store.read())

    def value(self) -> str:
        """The tag's value for this holder, its lease starting now."""
        self.holder["expires_at"] = time.time() + self.lease
        return json.dumps(self.holder)

    def _write(self) -> None:
        self.store.write(self.value())

    def _ours(self, holder: dict[str, Any] | None) -> bool:
        return bool(holder) and holder.get("token") == self.holder["token"]

    def stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why a holder no longer counts, or None while it does."""
        if time.time() > float(holder.get("expires_at", 0)):
            return "its lease expired"
        pid = int(holder.get("pid", 0))  # a tag without a start time (older): a process reusing the pid counts
        if holder.get("host") == socket.gethostname() and pid and not alive(pid, holder.get("pid_started")):
            return "its process is gone"
        if holder.get("run_id"):
            try:
                status = registry.run_status(self.client, holder["run_id"])
            except Exception as exc:  # only a run that is really gone frees the lock
                if is_not_found(exc):
                    return "its run no longer exists"
                raise registry_error(
                    exc, f"reading the lock holder's run {holder['run_id']}", store="tracking store"
                ) from None
            if status != "RUNNING":
                return f"its run ended {status}"
        return None

    def check_free(self, current: dict[str, Any] | None) -> None:
        """Raise :meth:`held` when ``current`` is another live holder; remember a stale one to take over."""
        if current and not self._ours(current):
            reason = self.stale_reason(current)
            if reason is None:
                raise self.held(current)
            self.taken_over, self.takeover_reason = current, reason

    # ------------------------------------------------------------------ life cycle
    def acquire(self) -> Lease:
        self.check_free(self.read())
        failed: MlflowError | None = None
        try:
            self._write()
        except MlflowError as exc:  # e.g. sqlite: a concurrent first write of the tag won the insert
            failed = exc
        try:
            time.sleep(self.settle)
            after = self.read()
            if not self._ours(after):
                if after is None and failed is not None:
                    raise failed
                raise self.held(after or {})
            if self.taken_over and self.taken_over.get("run_id"):
                self.ended = self._end_dead_runs(self.taken_over["run_id"])
            self.start_heartbeat()
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed before the with block: no lock left
            self._abandon()
            raise
        return self

    def start_heartbeat(self) -> None:
        """Renew the lease every ``lease / 3`` seconds (after :meth:`acquire`, or once :meth:`value` was written
        where nobody else could have written, e.g. with the run that carries it)."""
        self._beat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._beat.start()

    def _abandon(self) -> None:
        """Delete the tag if it is ours, best effort: a tag left behind is taken over later anyway (its
        process is gone), but the next job should not have to."""
        try:
            if self._ours(self.read()):
                self.store.delete()
        except Exception as exc:
            log.debug("could not remove the lease: %s", exc)

    def _end_dead_runs(self, run_id: str) -> list[str]:
        """End KILLED the dead holder's run and every run nested under it (any depth: its training run, that
        run's LR range test, a promotion) still RUNNING; returns the ids ended. Best effort: a run that cannot
        be ended stays as it is (the lock is ours either way)."""
        ended: list[str] = []
        try:
            runs = [(run_id, registry.run_status(self.client, run_id))]
            runs += [(r.info.run_id, r.info.status) for r in registry.nested_runs(self.client, run_id)]
        except Exception as exc:  # the holder's run is gone, or the store cannot say: nothing to end
            log.debug("could not read the runs of the lock's former holder %s: %s", run_id, exc)
            return ended
        for rid, status in runs:
            if status != "RUNNING":
                continue
            try:
                end_run(rid, "KILLED", client=self.client)
                ended.append(rid)
            except Exception as exc:
                log.debug("could not end run %s KILLED: %s", rid, exc)
        return ended

    def attach(self, run_id: str) -> None:
        """Name the run that holds the lock (others can then see when it ends)."""
        self.holder["run_id"] = run_id
        self.renew()

    def renew(self) -> None:
        if self.lost or not self._ours(self.read()):
            self.lost = True
            return
        self._write()

    def check(self) -> None:
        """Raise :meth:`held` unless this job still holds the lock (call before changing anything shared)."""
        current = self.read()
        if self.lost or not self._ours(current):
            self.lost = True
            raise self.held(current or {}, lost=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except Exception:  # a blip of the tracking server (MlflowException, RegistryError): next beat
                pass

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if not self.lost and self._ours(self.read()):
            self.store.delete()

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
