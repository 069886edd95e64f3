"""What a promotion hands back, and the record it leaves on the candidate version: its validation tags and a
line appended to its description (kept when two jobs append at once)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hyperflow import names
from hyperflow.tracking import registry_writes
from hyperflow.tracking.registry import Client
from hyperflow.workflows.gate import Check


@dataclass
class PromoteOutcome:
    run_id: str
    name: str
    version: str
    passed: bool
    promoted: bool
    baseline_version: str | None
    checks: list[Check]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    rows: str
    notes: list[str] = field(default_factory=list)
    already_champion: bool = False  # nothing to move: nothing is written to the version
    moved: bool = False  # this promotion moved the champion to its version
    champion_after: str | None = None  # the champion read back after that move

    @property
    def lost(self) -> bool:
        """Moved the champion, and another promotion moved it on before the read-back."""
        return self.moved and not self.promoted

    def lost_message(self) -> str:
        now = f"version {self.champion_after} is" if self.champion_after else "no version is"
        return (
            f"version {self.version} of '{self.name}' passed the gate and was moved to champion, but another "
            f"promotion moved the champion on right after: {now} the champion now (promote run "
            f"{self.run_id} records it); promote version {self.version} again to compare it with that one"
        )


def tag_version(client: Client, o: PromoteOutcome) -> None:
    status = names.PASSED if o.passed else names.FAILED
    registry_writes.set_version_tags(
        client,
        o.name,
        o.version,
        {
            names.VALIDATION_STATUS: status,
            names.BASELINE_VERSION: o.baseline_version or "none",
            names.VERSION_PROMOTE_RUN_ID: o.run_id,
        },
    )
    main = o.checks[0].metric if o.checks else next(iter(o.candidate))
    against = (
        f"champion v{o.baseline_version} ({main} {o.champion[main]:.4g})"
        if o.champion
        else "no champion (absolute thresholds only)"
    )
    moved = (
        ", promoted to champion"
        if o.promoted
        else f", moved to champion but replaced at once by another promotion (champion: "
        f"{'v' + o.champion_after if o.champion_after else 'none'})"
        if o.lost
        else ""
    )
    line = (
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: validation {status}{moved}: "
        f"{main} {o.candidate[main]:.4g} vs {against} on {o.rows}; promote run {o.run_id}"
    )
    registry_writes.add_to_description(client, o.name, o.version, line, names.VERSION_PROMOTION_PREFIX, o.run_id)
