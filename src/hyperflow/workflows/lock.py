"""The retrain lock: one retrain per registered model at a time, a lease (:mod:`hyperflow.tracking.lease`) kept in
the registered-model tag ``hyperflow.retrain_lock`` and renewed by a heartbeat, so it works against a shared tracking
server and not only on one machine.

The holder names its retrain run: another job may take the lock over once the lease has expired, that run is no
longer RUNNING, or (same host) its process is gone; the runs it left RUNNING (its own and any nested under it) are
then ended KILLED, and ``takeover_message`` says so. A holder paused longer than its lease loses the lock, which
:meth:`RegistryLock.check` reports before the champion moves. Fails closed: when the registry cannot be read, the
lock is neither taken nor taken over (RegistryError).
"""

from __future__ import annotations

import time
from typing import Any

from hyperflow import names
from hyperflow.errors import LeaseHeld
from hyperflow.tracking import registry
from hyperflow.tracking.lease import Lease, ModelTag
from hyperflow.tracking.registry import Client

LOCK_TAG = names.RETRAIN_LOCK


def describe(holder: dict[str, Any]) -> str:
    until = time.strftime("%H:%M:%S UTC", time.gmtime(holder.get("expires_at", 0)))
    return (
        f"run {holder.get('run_id') or '(starting)'} on host {holder.get('host')} pid {holder.get('pid')}, "
        f"lease until {until}"
    )


class LockHeld(LeaseHeld):
    """Another job holds the lock (exit code 4); ``holder`` says who."""

    def __init__(self, name: str, holder: dict[str, Any], lost: bool = False) -> None:
        what = "lost the retrain lock to" if lost else "another retrain holds the lock:"
        super().__init__(f"model '{name}': {what} {describe(holder)}", holder)


class RegistryLock(Lease):
    """``with RegistryLock(name):`` holds the retrain lock of one registered model, or raises LockHeld."""

    def __init__(self, name: str, *, lease: float = 600.0, settle: float = 1.0, client: Client | None = None) -> None:
        client = client or registry.default_client()
        super().__init__(ModelTag(client, name, LOCK_TAG), lease=lease, settle=settle, client=client)
        self.name = name

    def held(self, holder: dict[str, Any], lost: bool = False) -> LockHeld:
        return LockHeld(self.name, holder, lost)

    def takeover_message(self) -> str | None:
        """One line saying whom the lock was taken from and why, and which runs were ended; None when it was
        free."""
        if not self.taken_over:
            return None
        line = (
            f"model '{self.name}': took over the retrain lock from {describe(self.taken_over)} ({self.takeover_reason})"
        )
        if self.ended:
            holder = self.taken_over.get("run_id")
            nested = [r for r in self.ended if r != holder]
            what = [f"run {holder}"] if holder in self.ended else []
            what += [f"{len(nested)} run{'s' if len(nested) != 1 else ''} nested under it"] if nested else []
            line += f"; ended KILLED what it left RUNNING: {' and '.join(what)}"
        return line
