"""A model logged and registered: the pyfunc of :mod:`hyperflow.tracking.model` logged into a run (signature,
input example, pinned requirements, hyperflow's code bundled), registered once per run (a twin version, from a
request sent twice, deleted), and the model a run logged and the version it registered found again.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import sklearn
import torch
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType

from hyperflow import names
from hyperflow.core.data import Dataset
from hyperflow.tracking.model import ALLOW_MISSING, BUNDLE, HyperflowModel, predict_bundle
from hyperflow.tracking.runs import PACKAGE_DIR, _env, creation_tag
from hyperflow.version import version

EXAMPLE_MAX_COLUMNS = 1000  # a wider table's model is logged without its input example (the signature names all)


def _signature(dataset: Dataset, example_output: Any) -> ModelSignature:
    """Tables: every raw feature column by name, typed ``Any`` and optional, because the model itself
    converts what clients send (ints for a float column, numbers as text, bools, nulls) and names the
    columns a request lacks — MLflow's typed columns would refuse ``int64`` for ``double`` before the model
    sees the row. Param ``allow_missing_columns`` opts in to imputing absent columns."""
    pre = dataset.preprocessor
    params = None
    if pre.kind == "table":
        inputs = Schema([ColSpec(AnyType(), c, required=False) for c in pre.columns])
        params = ParamSchema([ParamSpec(ALLOW_MISSING, "boolean", False)])
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *pre.image_shape))])
    if isinstance(example_output, pd.DataFrame):
        outputs = Schema([ColSpec(_output_type(example_output[c]), c) for c in example_output.columns])
    else:
        outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *example_output.shape[1:]))])
    return ModelSignature(inputs, outputs, params)


def _output_type(column: pd.Series) -> str:
    kind = column.dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double"}.get(kind, "string")


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def pip_requirements() -> list[str]:
    """Pinned to what trained the model; explicit so that MLflow does not spend seconds inferring them."""
    import cloudpickle

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        "pyyaml",
        "tqdm",
        "matplotlib",
    ]


def log_model(
    model: torch.nn.Module,
    model_spec: dict[str, Any],
    dataset: Dataset,
    registered_model_name: str | None = None,
    user_code: list[str] | None = None,
    run_id: str | None = None,
) -> Any:
    """Log the model with its preprocessing as a pyfunc (signature, input example, explicit pip
    requirements, hyperflow's code bundled) into run ``run_id`` (default: the active run) and register it
    when a name is given. A finished run gets it without being reopened: it keeps its status and end time,
    and the store is spared the reopening and closing calls."""
    bundle = {
        "model_spec": model_spec,
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "preprocessor": dataset.preprocessor,
        "task": dataset.task,
        "classes": dataset.classes,
        "target_mean": dataset.target_mean,
        "target_std": dataset.target_std,
        "hyperflow_version": version(),
    }
    example = dataset.raw_example
    output = predict_bundle(bundle, model.cpu().eval(), example)  # the model takes its example: checked here
    if len(dataset.preprocessor.columns) > EXAMPLE_MAX_COLUMNS:
        example = None  # MLflow would check it again column by column (a minute for 20,000 columns)
    # no "Downloading artifacts" bar while MLflow checks the input example against the saved model
    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        _quiet("mlflow.pyfunc"),
        _env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ):
        warnings.simplefilter("ignore")  # MLflow's generic advice on pickled models and type hints
        path = Path(tmp, "bundle.pkl")
        with path.open("wb") as fh:
            pickle.dump(bundle, fh)
        # what mlflow.pyfunc.log_model does, with the run named (it only takes the active run); flavor_name
        # is the one pyfunc.log_model gives a PythonModel
        return Model.log(
            artifact_path=None,
            name="model",
            flavor=mlflow.pyfunc,
            flavor_name="pyfunc.CustomPythonModel",
            run_id=run_id,
            python_model=HyperflowModel(),
            artifacts={BUNDLE: str(path)},
            code_paths=[str(PACKAGE_DIR), *(user_code or [])],
            signature=_signature(dataset, output),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )


def finished_model(run_id: str, name: str | None = "model") -> Any | None:
    """The model logged (and fully uploaded: status READY) by run ``run_id`` under ``name`` (None: any name, the
    newest), or None."""
    from mlflow.entities import LoggedModelStatus

    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    named = f" AND name = '{name}'" if name is not None else ""
    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        output_format="list",
        filter_string=f"source_run_id = '{run_id}'{named}",
    )
    ready = [m for m in models if m.status == LoggedModelStatus.READY]
    return max(ready, key=lambda m: m.creation_timestamp) if ready else None


def version_of_run(name: str, run_id: str) -> Any | None:
    """The registered version of model ``name`` that run ``run_id`` produced (the oldest), or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register_once(
    model_uri: str, name: str, run_id: str, look_up: bool = True, tags: dict[str, str] | None = None
) -> tuple[Any, bool]:
    """(version, created): the version of ``name`` that run ``run_id`` already registered, else a new one,
    created with ``tags`` (in the same call; ``look_up=False``: the caller knows that the run has none). A
    twin of the new version (its creating request sent twice, see :func:`delete_twin_versions`) is deleted."""
    existing = version_of_run(name, run_id) if look_up else None
    if existing is not None:
        return existing, False
    created = creation_tag()
    with _quiet("mlflow.tracking._model_registry.client"):
        version = mlflow.register_model(model_uri, name, tags={**(tags or {}), **created})
    delete_twin_versions(name, run_id, str(version.version), created[names.CREATE_ID])
    return version, True


def delete_twin_versions(name: str, run_id: str, version: str, create_id: str) -> list[str]:
    """Delete the versions of ``name`` that the request which created ``version`` made besides it: MLflow's
    HTTP client sends a request again when its answer is lost (a tracking server restarted after the write),
    and the server then registers the same model twice. A twin has the same run and tag
    ``hyperflow.create_id``, and nothing points at it yet (the caller moves aliases to ``version``). Best
    effort; returns the versions deleted."""
    client = MlflowClient()
    try:
        twins = [
            v
            for v in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
            if str(v.version) != version and v.tags.get(names.CREATE_ID) == create_id
        ]
        for twin in twins:
            client.delete_model_version(name, str(twin.version))
        return [str(t.version) for t in twins]
    except Exception as exc:
        logging.getLogger(__name__).debug("could not look for twins of version %s of %s: %s", version, name, exc)
        return []
