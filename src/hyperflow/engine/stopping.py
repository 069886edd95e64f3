"""The one stop rule of a search, for grid, local and Spark alike: a small pure object fed the finished
trials in trial order (a resumed search's history included); it names why the search stops, or ''.

Order of the checks: too many failures in a row, ``loss_threshold`` reached, ``early_stop`` trials without
improvement, the ``budget`` of units of work used, the ``timeout`` passed. A search that ran out of points or
trials ends with ``budget``; a Spark search cancelled by its own timeout with ``timeout``. Every stop reason a
search records is made here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finished:
    """A finished trial as the stop rule sees it: failed (no loss), or a loss (ok or pruned)."""

    failed: bool
    loss: float | None = None
    reason: str = ""
    units: int = 0  # the units of work it used (epochs, or an objective's reported steps)


class StopRule:
    def __init__(
        self,
        loss_threshold: float | None = None,
        early_stop: int = 0,
        max_consecutive_failures: int = 0,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
        budget: int = 0,
    ) -> None:
        """``deadline``: wall clock (``clock()``, ``time.time`` by default); ``budget``: units of work in all; 0 for a
        count means no rule."""
        self.loss_threshold, self.early_stop, self.budget = loss_threshold, early_stop, budget
        self.max_failures, self.deadline, self.clock = max_consecutive_failures, deadline, clock
        self.counted: Callable[[], int] | None = None  # trials at once: the units used, those in flight included
        self.reason = ""  # the latest decision

    @classmethod
    def of(cls, search: Any, deadline: float | None) -> StopRule:
        """The rule of a search's settings (``SearchConfig``)."""
        return cls(
            search.loss_threshold, search.early_stop, search.max_consecutive_failures, deadline, budget=search.budget
        )

    def check(self, done: Sequence[Finished]) -> str:
        """Why the search should stop now ('' = go on), from the finished trials in trial order."""
        self.reason = self._failure_streak(done) or self._rules(done)
        return self.reason

    def final(self, timed_out: bool = False) -> str:
        """The stop reason a search records once it ended: the rule's, else the backend's own timeout,
        else ``budget`` (the points or the trial budget ran out)."""
        return self.reason or ("timeout" if timed_out else "budget")

    def _failure_streak(self, done: Sequence[Finished]) -> str:
        failures = 0
        for trial in reversed(done):
            if not trial.failed:
                break
            failures += 1
        if not self.max_failures or failures < self.max_failures:
            return ""
        return (
            f"{failures} trials failed in a row (last: {done[-1].reason if done else ''}); check the space "
            f"(e.g. lower the lr bounds) or raise max_consecutive_failures"
        )

    def _rules(self, done: Sequence[Finished]) -> str:
        losses = [t.loss for t in done if not t.failed and t.loss is not None]
        if self.loss_threshold is not None and losses and min(losses) <= self.loss_threshold:
            return "loss_threshold"
        if self.early_stop and losses:
            best = min(losses)
            best_at = max(i for i, t in enumerate(done) if not t.failed and t.loss == best)
            if len(done) - 1 - best_at >= self.early_stop:
                return f"early_stop: {self.early_stop} trials without improvement"
        used = sum(t.units for t in done)
        if self.budget and self.counted is not None:
            used = max(used, self.counted())
        if self.budget and used >= self.budget:
            return f"budget: {used} of {self.budget} units of work used"
        if self.deadline is not None and self.clock() >= self.deadline:
            return "timeout"
        return ""

    def units_left(self, done: Sequence[Finished]) -> int | None:
        """The units of work a trial started now may use (None: no budget)."""
        return max(0, self.budget - sum(t.units for t in done)) if self.budget else None
