"""The MLflow layer: the only package that imports ``mlflow``. One job per module:

- ``runs``: parent and child runs that always end in a defined state, params, results, tags, background
  calls, run names;
- ``experiments``: which experiment a run goes to; a deleted one as a one-line error;
- ``faults``: which failures are the store's and which the training's;
- ``callbacks``: the trainer's way in (per-epoch metrics in batches, TensorBoard);
- ``artifacts``: figures, JSON, folders, the dataset input, the LR range test's curve and plot;
- ``model``: the pyfunc model (raw rows in) and loading it back;
- ``model_logging``: the model logged into a run and registered once;
- ``registry``: version, alias and run look-ups, tags and aliases of versions.

The names below are its API for the layers above (``hyperflow.tracking.registry`` is used as a module). Those of
``callbacks``, ``model`` and ``model_logging``, which import torch, are imported on first use: a command refused
on what the store holds (``resume=`` an unknown run, a deleted experiment) reads it without importing torch.
"""

import importlib
from typing import Any

from hyperflow.errors import RegistryError, StoreFailure, Terminated, one_line
from hyperflow.tracking.artifacts import (
    check_writable,
    log_artifact,
    log_artifacts,
    log_dataset,
    log_dict,
    log_figure,
    log_lr_finder,
)
from hyperflow.tracking.background_calls import BackgroundCalls, call_now
from hyperflow.tracking.child_runs import active_child_run, child_run
from hyperflow.tracking.experiments import (
    check_experiment_id,
    current_experiment_id,
    deleted_experiment,
    experiment_state,
    run_page,
    tracking_uri,
    use_experiment,
)
from hyperflow.tracking.faults import (
    STORE_ERROR_CODES,
    failed_store,
    is_store_error,
    schema_refusal,
    store_error_text,
)
from hyperflow.tracking.registry import registry_error
from hyperflow.tracking.run_calls import end_run, log_metrics, runs_tagged, set_tag, set_tags
from hyperflow.tracking.run_ends import command_store_failure, forget_runs, interrupted_runs
from hyperflow.tracking.runs import (
    PACKAGE_DIR,
    ROLE_TAG,
    MlflowError,
    end_run_quietly,
    log_params,
    log_results,
    reopened_run,
    run_tags,
    tracked_run,
    unique_run_name,
)

__all__ = [
    "PACKAGE_DIR",
    "ROLE_TAG",
    "STORE_ERROR_CODES",
    "BackgroundCalls",
    "MlflowError",
    "MlflowMetrics",
    "RegistryError",
    "StoreFailure",
    "TensorBoardLogger",
    "Terminated",
    "active_child_run",
    "call_now",
    "check_experiment_id",
    "check_writable",
    "child_run",
    "command_store_failure",
    "current_experiment_id",
    "deleted_experiment",
    "end_run",
    "end_run_quietly",
    "experiment_state",
    "failed_store",
    "finished_model",
    "forget_runs",
    "interrupted_runs",
    "is_store_error",
    "load_pyfunc",
    "load_version",
    "log_artifact",
    "log_artifacts",
    "log_dataset",
    "log_dict",
    "log_figure",
    "log_lr_finder",
    "log_metrics",
    "log_model",
    "log_params",
    "log_results",
    "one_line",
    "pip_requirements",
    "register_once",
    "registry_error",
    "reopened_run",
    "run_page",
    "run_tags",
    "runs_tagged",
    "schema_refusal",
    "set_tag",
    "set_tags",
    "store_error_text",
    "tracked_run",
    "tracking_uri",
    "unique_run_name",
    "use_experiment",
    "version_of_run",
]

_ON_FIRST_USE = {
    **dict.fromkeys(("MlflowMetrics", "TensorBoardLogger"), "callbacks"),
    **dict.fromkeys(("load_pyfunc", "load_version"), "model"),
    **dict.fromkeys(
        ("finished_model", "log_model", "pip_requirements", "register_once", "version_of_run"), "model_logging"
    ),
}


def __getattr__(name: str) -> Any:
    """A name (or the module itself) of ``callbacks``, ``model`` or ``model_logging``, imported when first asked for."""
    module = _ON_FIRST_USE.get(name, name if name in ("callbacks", "model", "model_logging") else None)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    imported = importlib.import_module(f"{__name__}.{module}")
    return imported if name == module else getattr(imported, name)
