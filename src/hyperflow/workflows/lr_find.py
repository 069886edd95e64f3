"""The ``lr_find`` workflow: the LR range test as a tracked run (alone, or nested under a train run)."""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.lr_finder import LRFinder
from hyperflow.core.assembly import Setup, setup_training
from hyperflow.errors import UsageError
from hyperflow.tracking import artifacts, new_store


@dataclass
class LRFindOutcome:
    run_id: str
    experiment_id: str
    finder: LRFinder


class TrainingFailed(RuntimeError):
    """Training or the range test raised (torch refusing a shape or a dtype, a user's model): one line naming
    the error and where it was raised; the run ends FAILED with it as ``hyperflow.failure_reason``."""

    exit_code = 1


@contextmanager
def raised_in_training(what: str, tag_active_run: bool = True) -> Iterator[None]:
    """An error the model's training raises becomes :class:`TrainingFailed` (store failures, MLflow refusals,
    bad settings and hyperflow's own one-line errors pass as they are); the active run is tagged with it (``tag_active_run``: there is one)."""
    try:
        yield
    except Exception as exc:
        ours = hasattr(exc, "exit_code") and type(exc).__module__.startswith("hyperflow.")  # e.g. ArtifactStoreError
        if ours or isinstance(exc, (UsageError, tracking.MlflowError)) or tracking.is_store_error(exc):
            raise
        reason = f"{what} raised {tracking.one_line(exc)} (at {_where(exc)})"
        if tag_active_run:
            tracking.set_tag(names.FAILURE_REASON, reason[:5000])
        raise TrainingFailed(reason) from None


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc`` in code of the user's or hyperflow's (not in installed libraries),
    as ``file:line in function``: where to look first."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename and "/lib/python" not in f.filename]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def lr_find_in_run(setup: Setup, parent_run_id: str | None = None) -> LRFindOutcome:
    """Run the range test on a ready setup inside its own run (a child when ``parent_run_id`` is given)."""
    with raised_in_training("the LR range test", tag_active_run=parent_run_id is not None):
        run, finder = tracking.lr_range_test_run(setup, parent_run_id)
    return LRFindOutcome(run.info.run_id, run.info.experiment_id, finder)


def lr_find(config: TrainConfig) -> LRFindOutcome:
    """Validate everything first (bad input, or an artifact folder that cannot be written, raises UsageError
    before a run exists), then sweep."""
    setup = setup_training(config)
    new_store.prepare()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    artifacts.check_writable(config.experiment)
    return lr_find_in_run(setup)
