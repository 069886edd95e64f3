"""The logged MLflow model: a pyfunc that carries the preprocessing, so it takes raw rows.

``predict`` accepts a DataFrame of raw feature columns (any order, any JSON types, missing values; extra
columns ignored; a missing column is an error naming it unless ``params={"allow_missing_columns": True}``;
values it cannot use are imputed with a warning per column) — or image arrays — and returns, for
classifiers, ``prediction`` plus one ``probability_<class>`` column per class; for regression ``prediction``
in the target's units; for segmentation an array of mask probabilities. Never NaN: a row without a finite
prediction is an error naming it.

Also here: the columns a loaded model takes and returns, and loading a model back. Logging and registering it
are :mod:`hyperflow.tracking.model_logging`. ``HyperflowModel`` stays in this module: a logged model names its
class by module and name.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from hyperflow import names
from hyperflow.errors import RegistryError, whole_message
from hyperflow.tracking.registry import store_uri
from hyperflow.tracking.runs import _env

BUNDLE = "bundle"  # artifact key: pickled dict with model spec, weights, preprocessor and target codec
ALLOW_MISSING = "allow_missing_columns"  # predict param: impute absent feature columns instead of refusing


def probability_column(label: Any) -> str:
    return f"{names.PROBABILITY_PREFIX}{label}"


class HyperflowModel(mlflow.pyfunc.PythonModel):
    """Rebuilds the torch model from its spec and weights, and applies the fitted preprocessing."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        with open(context.artifacts[BUNDLE], "rb") as fh:
            self.bundle = pickle.load(fh)
        self.model = rebuild_model(self.bundle)

    # Raw rows as a DataFrame (image models take arrays): MLflow infers no schema from this hint and
    # leaves input checking to the logged signature, which is what we want.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> Any:
        from hyperflow.core.tables import MissingColumns

        allow = bool((params or {}).get(ALLOW_MISSING, False))
        try:
            return predict_bundle(self.bundle, self.model, model_input, allow_missing_columns=allow)
        except MissingColumns as exc:  # the scoring server answers HTTP 400 with this message
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def rebuild_model(bundle: dict) -> torch.nn.Module:
    from hyperflow.core.models import build_model

    model = build_model(**bundle["model_spec"])
    model.load_state_dict(bundle["state_dict"])
    return model.eval()


def predict_bundle(bundle: dict, model: torch.nn.Module, raw: Any, allow_missing_columns: bool = False) -> Any:
    pre = bundle["preprocessor"]
    if pre.kind == "table":
        X = pre.transform_rows(raw, allow_missing_columns=allow_missing_columns)
    else:
        X = pre.transform(np.asarray(raw))
    with torch.inference_mode():
        out = model(torch.from_numpy(X))
    task = bundle["task"]
    if task == "classification":
        probs = _finite(torch.softmax(out, dim=1).numpy())
        classes = bundle["classes"]
        result = pd.DataFrame({"prediction": [classes[i] for i in probs.argmax(1)]})
        for i, label in enumerate(classes):
            result[probability_column(label)] = probs[:, i]
        return result
    if task == "regression":
        values = out.reshape(-1).double().numpy() * bundle["target_std"] + bundle["target_mean"]
        return pd.DataFrame({"prediction": _finite(values)})
    return _finite(torch.sigmoid(out).numpy())


def _finite(numbers: np.ndarray) -> np.ndarray:
    """The model's numbers, or an error naming the rows whose prediction is not finite (inputs so extreme
    that the network overflows): never NaN in place of a prediction."""
    bad = np.flatnonzero(~np.isfinite(numbers).all(axis=tuple(range(1, numbers.ndim))))
    if len(bad):
        raise MlflowException(
            f"{len(bad)} row(s) (e.g. row {bad[0]}, counting from 0) have no finite prediction: "
            f"their values are too large for this model (far outside its training data); "
            f"check them for unit or entry errors",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return numbers


def signature_columns(loaded: Any) -> tuple[list[str], list[str]]:
    """The columns a loaded table model takes and returns, by its signature ([] where it names none)."""
    schemas = loaded.metadata.get_input_schema(), loaded.metadata.get_output_schema()
    return tuple(s.input_names() if s is not None and s.has_input_names() else [] for s in schemas)


def load_pyfunc(uri: str) -> Any:
    """A logged model as a pyfunc (``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/…``);
    MLflow's errors raise as they are (:data:`hyperflow.tracking.MlflowError`, OSError). No download bar:
    a URI that names no model is then told in one line."""
    with _env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"):
        return mlflow.pyfunc.load_model(uri)


def load_version(name: str, version: str) -> Any:
    """A version as a pyfunc model; RegistryError (one line, exit 2) when it cannot be loaded."""
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:
        raise RegistryError(
            f"cannot load version {version} of model '{name}' from {store_uri()}: {whole_message(exc)}; "
            "nothing was moved"
        ) from None
