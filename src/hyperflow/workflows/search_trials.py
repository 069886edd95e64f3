"""What the search workflow does as its trials finish: the search run's ``best_val_loss`` curve, sent in batches,
and the best trial's model kept in memory, so that the end does not train it again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hyperflow import names
from hyperflow.engine.trial import TrialRecord
from hyperflow.tracking import search_record


@dataclass
class Kept:
    """The best trial trained in this session, kept in memory so its model is not trained again."""

    loss: float
    number: int
    state: dict[str, Any]  # the model's weights


class TrialsSeen:
    """Called with each finished trial (and the weights its objective kept, when it beat the best so far) in the
    order they finish. The curve's
    step counts the trials finished before it (the trial number, for trials run one at a time): trials run at
    once finish out of number order, and the curve must still only go down."""

    def __init__(self, run_id: str, history: list[TrialRecord], send: Callable[..., Any]) -> None:
        self.records = list(history)
        self.progress = search_record.Progress(run_id, send)
        self.kept: Kept | None = None

    def __call__(self, record: TrialRecord, state: dict[str, Any] | None) -> None:
        better = record.status == names.TRIAL_OK and (self.kept is None or record.loss < self.kept.loss)
        if state is not None and better:
            self.kept = Kept(record.loss, record.number, state)
        self.records.append(record)
        self.log([record])

    def log(self, new: list[TrialRecord], force: bool = False) -> None:
        position = {id(r): i for i, r in enumerate(self.records)}
        for record in new:
            step = position[id(record)]
            ok = [r.loss for r in self.records[: step + 1] if r.status == names.TRIAL_OK and r.loss is not None]
            if ok:
                self.progress.add(min(ok), step)
        self.progress.flush(force)

    def read_back(self, records: list[TrialRecord]) -> None:
        """The trials as read back from the store (a Spark search's): the new ones on the curve."""
        known = {r.run_id for r in self.records}
        self.records = list(records)
        self.log([r for r in records if r.run_id not in known])
