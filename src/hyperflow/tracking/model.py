"""The logged MLflow model: a pyfunc that carries the preprocessing, so it takes raw rows.

``predict`` accepts a DataFrame of raw feature columns (any order, any JSON types, missing values; extra
columns ignored; a missing column is an error naming it unless ``params={"allow_missing_columns": True}``)
— or image arrays — and returns, for classifiers, ``prediction`` plus one
``probability_<class>`` column per class; for regression ``prediction`` in the target's units; for
segmentation an array of mask probabilities.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
import pandas as pd
import torch

BUNDLE = "bundle"  # artifact key: pickled dict with model spec, weights, preprocessor and target codec
ALLOW_MISSING = "allow_missing_columns"  # predict param: impute absent feature columns instead of refusing


def probability_column(label: Any) -> str:
    return f"probability_{label}"


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
        X = pre.transform(raw, allow_missing_columns=allow_missing_columns)
    else:
        X = pre.transform(np.asarray(raw))
    with torch.inference_mode():
        out = model(torch.from_numpy(X))
    task = bundle["task"]
    if task == "classification":
        probs = torch.softmax(out, dim=1).numpy()
        classes = bundle["classes"]
        result = pd.DataFrame({"prediction": [classes[i] for i in probs.argmax(1)]})
        for i, label in enumerate(classes):
            result[probability_column(label)] = probs[:, i]
        return result
    if task == "regression":
        values = out.reshape(-1).double().numpy() * bundle["target_std"] + bundle["target_mean"]
        return pd.DataFrame({"prediction": values})
    return torch.sigmoid(out).numpy()
