"""The ``lr_find`` workflow: the LR range test as a tracked run (alone, or nested under a train run)."""

from __future__ import annotations

from dataclasses import dataclass

from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.lr_finder import LRFinder
from hyperflow.core.assembly import Setup, run_lr_finder, setup_training


@dataclass
class LRFindOutcome:
    run_id: str
    experiment_id: str
    finder: LRFinder


def lr_find_in_run(setup: Setup, parent_run_id: str | None = None) -> LRFindOutcome:
    """Run the range test on a ready setup inside its own run (a child when ``parent_run_id`` is given)."""
    c = setup.config
    tags = tracking.run_tags(setup.dataset)
    with tracking.tracked_run(names.ROLE_LR_FIND, experiment=c.experiment, parent_run_id=parent_run_id, tags=tags,
                              run_name=c.run_name or tracking.unique_run_name(names.ROLE_LR_FIND, setup.dataset.name)
                              if parent_run_id is None else "lr_find") as run:
        tracking.log_params(run.info.run_id, c.to_params())
        finder = run_lr_finder(setup)
        tracking.log_lr_finder(run.info.run_id, finder, c.suggestion)
    return LRFindOutcome(run.info.run_id, run.info.experiment_id, finder)


def lr_find(config: TrainConfig) -> LRFindOutcome:
    """Validate everything first (bad input raises UsageError before a run exists), then sweep."""
    return lr_find_in_run(setup_training(config))
