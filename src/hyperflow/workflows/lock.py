"""A lease lock kept in MLflow itself (a registered-model tag), so it works against a shared tracking
server and not only on one machine.

The tag ``hyperflow.retrain_lock`` holds JSON ``{token, run_id, host, pid, acquired_at, expires_at}``.
MLflow has no conditional write, so acquiring is write, pause ``settle`` seconds, read back, and keep the
lock only if the token read is ours: of writers that overlap within the pause exactly one sees its own
token. A heartbeat thread renews the lease every ``lease / 3`` seconds. Another job may take the lock over
once the lease has expired, its holder's run is no longer RUNNING, or (same host) its process is gone; the runs
it left RUNNING (its own and any nested under it) are then ended KILLED, and ``takeover_message`` says so.
Limits: two writers further apart than ``settle`` are serialised by the read-before-write, not by the
store; a holder paused longer than its lease loses the lock, which :meth:`RegistryLock.check` reports.
Fails closed: when the registry cannot be read, the lock is neither taken nor taken over (RegistryError).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from hyperflow import names, tracking
from hyperflow.tracking import registry
from hyperflow.tracking.registry import Client, is_not_found, registry_error

LOCK_TAG = names.RETRAIN_LOCK
log = logging.getLogger(__name__)


def describe(holder: dict[str, Any]) -> str:
    until = time.strftime("%H:%M:%S UTC", time.gmtime(holder.get("expires_at", 0)))
    return (f"run {holder.get('run_id') or '(starting)'} on host {holder.get('host')} pid {holder.get('pid')}, "
            f"lease until {until}")


class LockHeld(RuntimeError):
    """Another job holds the lock (exit code 4); ``holder`` says who."""

    exit_code = 4

    def __init__(self, name: str, holder: dict[str, Any], lost: bool = False) -> None:
        self.holder = holder
        what = "lost the retrain lock to" if lost else "another retrain holds the lock:"
        super().__init__(f"model '{name}': {what} {describe(holder)}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RegistryLock:
    """``with RegistryLock(name):`` holds the retrain lock of one registered model, or raises LockHeld."""

    def __init__(self, name: str, *, lease: float = 600.0, settle: float = 1.0,
                 client: Client | None = None) -> None:
        self.name, self.lease, self.settle = name, lease, settle
        self.client = client or registry.default_client()
        self.holder: dict[str, Any] = {"token": uuid.uuid4().hex, "run_id": None, "host": socket.gethostname(),
                                       "pid": os.getpid(), "acquired_at": time.time()}
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.taken_over: dict[str, Any] | None = None  # the stale holder this lock replaced
        self.takeover_reason: str | None = None  # why that holder no longer counted
        self.ended: list[str] = []  # its runs (and nested runs) left RUNNING that this lock ended KILLED

    # ------------------------------------------------------------------ store
    def read(self) -> dict[str, Any] | None:
        raw = registry.model_tag(self.client, self.name, LOCK_TAG)
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return None  # unreadable: treated as free

    def _write(self) -> None:
        self.holder["expires_at"] = time.time() + self.lease
        registry.set_model_tag(self.client, self.name, LOCK_TAG, json.dumps(self.holder))

    def _ours(self, holder: dict[str, Any] | None) -> bool:
        return bool(holder) and holder.get("token") == self.holder["token"]

    def stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why a holder no longer counts, or None while it does."""
        if time.time() > float(holder.get("expires_at", 0)):
            return "its lease expired"
        if holder.get("host") == socket.gethostname() and not _process_alive(int(holder.get("pid", 0))):
            return "its process is gone"
        if holder.get("run_id"):
            try:
                status = registry.run_status(self.client, holder["run_id"])
            except Exception as exc:  # only a run that is really gone frees the lock
                if is_not_found(exc):
                    return "its run no longer exists"
                raise registry_error(exc, f"reading the lock holder's run {holder['run_id']}",
                                     store="tracking store") from None
            if status != "RUNNING":
                return f"its run ended {status}"
        return None

    # ------------------------------------------------------------------ life cycle
    def acquire(self) -> "RegistryLock":
        current = self.read()
        if current and not self._ours(current):
            reason = self.stale_reason(current)
            if reason is None:
                raise LockHeld(self.name, current)
            self.taken_over, self.takeover_reason = current, reason
        failed: tracking.MlflowError | None = None
        try:
            self._write()
        except tracking.MlflowError as exc:  # e.g. sqlite: a concurrent first write of the tag won the insert
            failed = exc
        try:
            time.sleep(self.settle)
            after = self.read()
            if not self._ours(after):
                if after is None and failed is not None:
                    raise failed
                raise LockHeld(self.name, after or {})
            if self.taken_over and self.taken_over.get("run_id"):
                self.ended = self._end_dead_runs(self.taken_over["run_id"])
            self._beat = threading.Thread(target=self._heartbeat, name=f"lock-{self.name}", daemon=True)
            self._beat.start()
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed before the with block: no lock left
            self._abandon()
            raise
        return self

    def _abandon(self) -> None:
        """Delete the tag if it is ours, best effort: a tag left behind is taken over later anyway (its
        process is gone), but the next job should not have to."""
        try:
            if self._ours(self.read()):
                registry.delete_model_tag(self.client, self.name, LOCK_TAG)
        except Exception as exc:
            log.debug("could not remove the retrain lock of %s: %s", self.name, exc)

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
                tracking.end_run(rid, "KILLED", client=self.client)
                ended.append(rid)
            except Exception as exc:
                log.debug("could not end run %s KILLED: %s", rid, exc)
        return ended

    def takeover_message(self) -> str | None:
        """One line saying whom the lock was taken from and why, and which runs were ended; None when it was
        free."""
        if not self.taken_over:
            return None
        line = (f"model '{self.name}': took over the retrain lock from {describe(self.taken_over)} "
                f"({self.takeover_reason})")
        if self.ended:
            holder = self.taken_over.get("run_id")
            nested = [r for r in self.ended if r != holder]
            what = [f"run {holder}"] if holder in self.ended else []
            what += [f"{len(nested)} run{'s' if len(nested) != 1 else ''} nested under it"] if nested else []
            line += f"; ended KILLED what it left RUNNING: {' and '.join(what)}"
        return line

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
        """Raise LockHeld unless this job still holds the lock (call before changing anything shared)."""
        current = self.read()
        if self.lost or not self._ours(current):
            self.lost = True
            raise LockHeld(self.name, current or {}, lost=True)

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
            registry.delete_model_tag(self.client, self.name, LOCK_TAG)

    def __enter__(self) -> "RegistryLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
