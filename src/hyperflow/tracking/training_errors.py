"""An error a model's training raises, told apart from the store's: the one line that names it and where it
was raised, tagged on the run, so that the run ends FAILED (not KILLED, which says the store failed) and the
CLI prints one line (exit 1) instead of a traceback."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.errors import UsageError
from hyperflow.tracking.faults import is_store_error, one_line


class TrainingFailed(RuntimeError):
    """Training or the range test raised (torch refusing a shape or a dtype, a user's model): one line naming
    the error and where it was raised; the run ends FAILED with it as ``hyperflow.failure_reason``."""

    exit_code = 1


@contextmanager
def raised_in_training(what: str, also_tag: str | None = None) -> Iterator[None]:
    """An error the model's training raises (an ``OSError`` of its own included) becomes :class:`TrainingFailed`
    (store failures, MLflow refusals, bad settings and hyperflow's own one-line errors pass as they are); the
    active run, and run ``also_tag`` (e.g. its parent), are tagged with it."""
    try:
        yield
    except Exception as exc:
        ours = hasattr(exc, "exit_code") and type(exc).__module__.startswith("hyperflow.")  # e.g. ArtifactStoreError
        if ours or isinstance(exc, (UsageError, MlflowException)) or is_store_error(exc, os_errors=False):
            raise
        reason = f"{what} raised {one_line(exc)} (at {_where(exc)})"
        active = mlflow.active_run()
        for run_id in {active.info.run_id if active else None, also_tag} - {None}:
            MlflowClient().set_tag(run_id, names.FAILURE_REASON, reason[:5000])
        raise TrainingFailed(reason) from None


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc`` in code of the user's or hyperflow's (not in installed libraries),
    as ``file:line in function``: where to look first."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename and "/lib/python" not in f.filename]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
