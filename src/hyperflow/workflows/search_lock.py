"""One process works on a search run at a time: the search lock, a lease (:mod:`hyperflow.tracking.lease`) kept in
the search run's tag ``hyperflow.search_lock`` and renewed by a heartbeat.

A new search writes it with the run that carries it (nobody can know the run before); ``resume=`` checks it when it
reads the run (before anything heavy) and takes it before the run is reopened. A second process is refused with
one line naming the holder (exit 4), writing nothing. A holder that died is taken over once its lease has expired
or, on the same host, at once when its process is gone; the trials it left RUNNING are then ended by the resume.
The lease names no run: the run it guards is the search's own, which is not RUNNING while a resume starts.
"""

from __future__ import annotations

import time
from typing import Any

from hyperflow import names
from hyperflow.errors import LeaseHeld
from hyperflow.tracking import registry
from hyperflow.tracking.lease import Lease, RunTag, parse_holder

LEASE = 600.0  # seconds; the holder renews it every LEASE / 3


def _clock(seconds: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(seconds or 0)))


class SearchLocked(LeaseHeld):
    """Another process works on the search run (exit code 4); ``holder`` says who."""

    def __init__(self, run_id: str, holder: dict[str, Any], lost: bool = False) -> None:
        who = (
            f"host {holder.get('host')} pid {holder.get('pid')} since {_clock(holder.get('acquired_at'))} "
            f"(lease until {_clock(holder.get('expires_at'))})"
        )
        text = (
            f"search run {run_id}: lost to {who}, which took it over"
            if lost
            else f"search run {run_id} is being run by {who}: one process at a time; resume it once that one ends "
            f"(a process that died is taken over when its lease ends, at once on the same host)"
        )
        super().__init__(text, holder)


class SearchLock(Lease):
    """The lock of search run ``run_id``; a new search's (``run_id`` None) is bound to its run by :meth:`bind`."""

    def __init__(self, run_id: str | None = None, *, lease: float = LEASE, settle: float = 1.0) -> None:
        client = registry.default_client()
        super().__init__(RunTag(client, run_id or "", names.SEARCH_LOCK), lease=lease, settle=settle, client=client)
        self.run_id = run_id or ""

    def held(self, holder: dict[str, Any], lost: bool = False) -> SearchLocked:
        return SearchLocked(self.run_id, holder, lost)

    def bind(self, run_id: str) -> None:
        """A new search: its run was created with tag ``{SEARCH_LOCK: self.value()}``; renew it from now on."""
        self.run_id = self.store.run_id = run_id  # type: ignore[attr-defined]
        self.start_heartbeat()

    def takeover_message(self) -> str | None:
        """One line saying whose lock was taken over and why; None when it was free."""
        if not self.taken_over:
            return None
        h = self.taken_over
        return (
            f"search run {self.run_id}: took over from host {h.get('host')} pid {h.get('pid')} "
            f"(since {_clock(h.get('acquired_at'))}): {self.takeover_reason}"
        )


def check_free(run: Any) -> None:
    """Refuse a search run another live process works on (its tag as read with the run: no extra call)."""
    holder = parse_holder(run.data.tags.get(names.SEARCH_LOCK))
    if holder:
        SearchLock(run.info.run_id).check_free(holder)
