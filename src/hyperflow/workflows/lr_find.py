"""The ``lr_find`` workflow: the LR range test as a tracked run, alone, or nested under a train run (``lr=auto``)
or a search run (``lr_bounds=auto``): :func:`lr_range_test_run` is the one implementation."""

from __future__ import annotations

from dataclasses import dataclass

from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.assembly import Setup, run_lr_finder, setup_training
from hyperflow.core.lr_finder import LRFinder
from hyperflow.runtime import startup
from hyperflow.tracking import artifacts, new_store
from hyperflow.tracking.faults import raised_in_training


@dataclass
class LRFindOutcome:
    run_id: str
    experiment_id: str
    finder: LRFinder


def lr_range_test_run(setup: Setup, parent_run_id: str | None = None) -> LRFindOutcome:
    """The LR range test on a ready setup in a run of its own (role ``lr_find``; a child named ``lr_find``
    when ``parent_run_id`` is given): params, the curve, the suggestion and the plot."""
    c = setup.config
    own_name = c.run_name or tracking.unique_run_name(names.ROLE_LR_FIND, setup.dataset.name)
    name = "lr_find" if parent_run_id else own_name
    with tracking.tracked_run(
        names.ROLE_LR_FIND,
        experiment=c.experiment,
        parent_run_id=parent_run_id,
        tags=tracking.run_tags(setup.dataset),
        run_name=name,
    ) as run:
        tracking.log_params(run.info.run_id, c.to_params())
        with raised_in_training("the LR range test", also_tag=parent_run_id):
            startup.end()  # a command's start-up is over: see hyperflow.runtime.startup
            finder = run_lr_finder(setup)
        tracking.log_lr_finder(run.info.run_id, finder, c.suggestion)
    return LRFindOutcome(run.info.run_id, run.info.experiment_id, finder)


def lr_find(config: TrainConfig) -> LRFindOutcome:
    """Validate everything first (bad input, or an artifact folder that cannot be written, raises UsageError
    before a run exists), then sweep."""
    setup = setup_training(config)
    new_store.make_if_missing()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    artifacts.check_writable(config.experiment)
    return lr_range_test_run(setup)
