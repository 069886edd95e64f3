"""Experiments: which one a run goes to, marked for MLflow's model-training view (tag ``mlflow.experimentKind``, the
experiment's kind in MLflow 3's UI; 3.17's takes the view from the page's address, so links carry it too:
:func:`run_page`), and a deleted one said in one line (how to restore it) instead of MLflow's traceback, for the
CLI and Python callers alike."""

from __future__ import annotations

import mlflow
from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.errors import UsageError


def use_experiment(name: str) -> str:
    """Make experiment ``name`` the active one (created when missing, marked for the model-training view) and
    return its id; a deleted one is a one-line UsageError saying how to restore it, not MLflow's traceback."""
    try:
        experiment = mlflow.set_experiment(name)
    except MlflowException as exc:
        raise_if_deleted(exc, name)
        raise
    if _active_experiment_id() != experiment.experiment_id:
        # MLflow 3.17 gives the loser of a race to create it the experiment without making it the active one
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return mark_model_training(experiment)


def use_experiment_of_run(run_id: str) -> str:
    """Make the experiment of run ``run_id`` the active one (a run is reopened in its own), marked as
    :func:`use_experiment` marks it; its id."""
    return mark_model_training(mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id))


def mark_model_training(experiment: Experiment | str) -> str:
    """Tag ``experiment`` (or the one of that id) ``mlflow.experimentKind=custom_model_development``, so that
    MLflow's UI opens it in its model-training view, unless it has a kind already (a user's choice stays); its
    id. One call when the tag is there already (none when given the experiment)."""
    client = MlflowClient()
    if isinstance(experiment, str):
        experiment = client.get_experiment(experiment)
    if names.EXPERIMENT_KIND not in experiment.tags:
        try:
            client.set_experiment_tag(experiment.experiment_id, names.EXPERIMENT_KIND, names.MODEL_TRAINING)
        except MlflowException:  # the stores have no insert-if-missing: a command starting with this one tagged it
            if names.EXPERIMENT_KIND not in client.get_experiment(experiment.experiment_id).tags:
                raise
    return experiment.experiment_id


def experiment_state(name: str) -> tuple[str, str] | None:
    """``(lifecycle_stage, experiment_id)`` of experiment ``name`` (stage ``active`` or ``deleted``), or None
    when there is none. Store failures raise as they are."""
    experiment = MlflowClient().get_experiment_by_name(name)
    return None if experiment is None else (experiment.lifecycle_stage, experiment.experiment_id)


def check_experiment_id(experiment_id: str) -> None:
    """Refuse experiment ``experiment_id`` (``MLFLOW_EXPERIMENT_ID``) when the store has none of that id or
    it was deleted: one UsageError, before any run. Store failures raise as they are."""
    try:
        experiment = MlflowClient().get_experiment(experiment_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise UsageError(
            f"MLFLOW_EXPERIMENT_ID={experiment_id}: the tracking store {tracking_uri()} has no "
            f"experiment of that id: unset it, set it to an existing one, or name one with "
            f"experiment=NAME (created when missing)"
        ) from None
    if experiment.lifecycle_stage == "deleted":
        raise deleted_experiment(experiment.name, experiment.experiment_id)


def deleted_experiment(name: str, experiment_id: str) -> UsageError:
    return UsageError(
        f"experiment '{name}' was deleted: restore it with 'mlflow experiments restore "
        f"--experiment-id {experiment_id}' (same tracking URI) or pick another name with experiment=NAME"
    )


def raise_if_deleted(exc: BaseException, name: str | None) -> None:
    """Raise :func:`deleted_experiment` from None when ``exc`` came from experiment ``name`` being deleted."""
    if not name or not isinstance(exc, MlflowException):
        return
    try:
        state = experiment_state(name)
    except Exception:  # the store cannot say: the original error stands
        return
    if state is not None and state[0] == "deleted":
        raise deleted_experiment(name, state[1]) from None


def current_experiment_id(name: str | None = None) -> str:
    """The id of experiment ``name`` (made active, created when missing), else MLflow's own choice: the
    environment, the active run, or the default experiment."""
    return use_experiment(name) if name else _active_experiment_id()


def _active_experiment_id() -> str:
    """MLflow's rule for the experiment a new run goes to (private in MLflow, so read in this one place)."""
    from mlflow.tracking.fluent import _get_experiment_id

    return _get_experiment_id()


def run_page(experiment_id: str, run_id: str) -> str:
    """The address of run ``run_id``'s page in MLflow's UI (after its ``/``), in the model-training view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{names.MODEL_TRAINING_VIEW}"


def tracking_uri() -> str:
    """The tracking URI as shown to users: as configured, less any user name and password."""
    from hyperflow.tracking.registry import store_uri

    return store_uri(mlflow.get_tracking_uri())
