"""The ``lr_find`` workflow: the LR range test as a tracked run (alone, or nested under a train run)."""

from __future__ import annotations

from dataclasses import dataclass

from hyperflow import tracking
from hyperflow.config import TrainConfig
from hyperflow.core.assembly import Setup, setup_training
from hyperflow.core.lr_finder import LRFinder
from hyperflow.tracking import artifacts, new_store


@dataclass
class LRFindOutcome:
    run_id: str
    experiment_id: str
    finder: LRFinder


def lr_find_in_run(setup: Setup, parent_run_id: str | None = None) -> LRFindOutcome:
    """Run the range test on a ready setup inside its own run (a child when ``parent_run_id`` is given)."""
    run, finder = tracking.lr_range_test_run(setup, parent_run_id)
    return LRFindOutcome(run.info.run_id, run.info.experiment_id, finder)


def lr_find(config: TrainConfig) -> LRFindOutcome:
    """Validate everything first (bad input, or an artifact folder that cannot be written, raises UsageError
    before a run exists), then sweep."""
    setup = setup_training(config)
    new_store.prepare()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    artifacts.check_writable(config.experiment)
    return lr_find_in_run(setup)
