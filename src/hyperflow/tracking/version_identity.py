"""What a registered version predicts from what (task, target, input columns, class labels), read from its
run and its logged signature: compared before a version may replace the champion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.config import TrainConfig
from hyperflow.errors import UsageError
from hyperflow.tracking.registry import is_not_found, registry_error, run_config, version_run

UNKNOWN = object()


@dataclass(frozen=True)
class Identity:
    """What a version predicts from what: compared before a version may replace the champion."""

    task: Any = UNKNOWN  # classification | regression | segmentation
    target: Any = UNKNOWN  # the target column (None for a built-in data set)
    features: Any = UNKNOWN  # input column names (a sorted tuple), or the tensor input spec as JSON
    classes: Any = UNKNOWN  # a classifier's class labels as text (a sorted tuple)


def version_identity(client: MlflowClient, mv: ModelVersion, config: TrainConfig | None = None) -> Identity:
    """Task (run tag ``hyperflow.task``, or its search's for a trial), target (the run's settings) and
    input columns (the logged signature) of a version; what cannot be read stays unknown."""
    task: Any = UNKNOWN
    target: Any = UNKNOWN if config is None else config.target
    try:
        run = version_run(client, mv)
    except UsageError:  # no run, or it was deleted: only the signature can speak
        run = None
    if run is not None:
        task = run.data.tags.get(names.TASK) or UNKNOWN
        parent = run.data.tags.get(names.PARENT_RUN_ID)
        if task is UNKNOWN and parent:
            try:
                task = client.get_run(parent).data.tags.get(names.TASK) or UNKNOWN
            except Exception as exc:
                if not is_not_found(exc):
                    raise registry_error(
                        exc, f"reading the search run of version {mv.version}", store="tracking store"
                    ) from None
        if config is None:
            try:
                target = run_config(client, run).target
            except UsageError:
                pass
    return Identity(task, target, *_signature_io(mv))


def _signature_io(mv: ModelVersion) -> tuple[Any, Any]:
    """(input columns, class labels) of a version, by its logged signature; UNKNOWN where it does not say."""
    from mlflow.models import get_model_info

    try:
        info = get_model_info(f"models:/{mv.name}/{mv.version}")
    except Exception as exc:
        if is_not_found(exc) or isinstance(exc, (OSError, FileNotFoundError)):
            return UNKNOWN, UNKNOWN
        raise registry_error(exc, f"reading the signature of version {mv.version} of model '{mv.name}'") from None
    signature = info.signature
    inputs = signature.inputs if signature is not None else None
    if inputs is None:
        features = UNKNOWN
    elif inputs.is_tensor_spec() or not inputs.has_input_names():
        features = inputs.to_json()
    else:
        features = tuple(sorted(inputs.input_names()))
    outputs = signature.outputs if signature is not None else None
    names_out = outputs.input_names() if outputs is not None and outputs.has_input_names() else []
    prefix = names.PROBABILITY_PREFIX
    classes = tuple(sorted(n[len(prefix) :] for n in names_out if n.startswith(prefix))) or UNKNOWN
    return features, classes
