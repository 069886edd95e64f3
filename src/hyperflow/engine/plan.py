"""The plan of a search, pure: from its space, settings and the trials a resume keeps, the trials still to run.

Trial numbers are hyperopt ids, and each id's suggestion is seeded from (``seed``, id) alone
(:func:`hyperflow.engine.hyperopt_records.trial_seed`), so a resumed search proposes what the uninterrupted
one would have proposed next. The literature presets not yet run are queued again when a search was
interrupted among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hyperflow.config import SearchConfig
from hyperflow.engine import hyperopt_records
from hyperflow.engine.grid import grid_points
from hyperflow.engine.space_hyperopt import to_vals
from hyperflow.engine.space_points import contains
from hyperflow.engine.trial import TrialRecord


def in_space(space: dict[str, Any], records: list[TrialRecord]) -> list[TrialRecord]:
    """The trials hyperopt learns from: those whose point the (possibly edited) space can produce."""
    return [r for r in records if contains(space, r.params)]


def next_number(records: list[TrialRecord], highest: int, at_once: bool) -> int:
    """The next trial's number after ``records`` (``highest``: of every trial run, those killed included).
    Trials run one at a time: a trial killed in flight is the last one, and its number (and suggestion) comes
    again. Trials run at once (workers, Spark) leave gaps; their numbers are not used again."""
    kept = max((r.number for r in records), default=-1) + 1
    return max(kept, highest + 1) if at_once else kept


@dataclass(frozen=True)
class Plan:
    """A search's space and budget after ``history`` (the trials kept, in trial order); ``highest``: the
    highest number of every trial run so far, those killed in flight included."""

    space: dict[str, Any]
    settings: SearchConfig
    history: tuple[TrialRecord, ...] = ()
    highest: int = -1

    def grid(self) -> list[dict[str, Any]]:
        """The grid's points not run yet, up to the budget left."""
        done = [r.params for r in self.history]
        budget = max(0, self.settings.max_evals - len(self.history))
        return [p for p in grid_points(self.space) if p not in done][:budget]

    def learned(self) -> list[tuple[int, dict[str, list], TrialRecord]]:
        """The history hyperopt learns from, as (id, vals, record)."""
        return [(r.number, to_vals(self.space, r.params), r) for r in in_space(self.space, list(self.history))]

    def budget(self) -> int:
        """``max_evals`` as hyperopt counts it: the trials kept but not shown to it count too."""
        return self.settings.max_evals - (len(self.history) - len(self.learned()))

    def presets(self) -> list[dict[str, list]]:
        """The literature presets to queue first (hyperopt ``vals``): a resume among them caps the rest as the
        first run did."""
        records = list(self.history) if self.settings.seed_presets else None
        left = max(0, self.settings.max_evals - len(self.history) - 1)
        return hyperopt_records.preset_points(self.space, records)[:left]
