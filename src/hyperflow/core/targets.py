"""The target column: the task it implies when none is given, and its labels or values as numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hyperflow.errors import UsageError

MAX_CLASSES_FOR_INT_TARGET = 20


def infer_task(y: pd.Series) -> str:
    """classification for string/bool/category or few-valued integer targets, regression otherwise."""
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= MAX_CLASSES_FOR_INT_TARGET:
        return "classification"
    return "regression"


def whole_numbers_as_int(y: pd.Series) -> pd.Series:
    """A float target of whole numbers only (e.g. 0/1 made float by a missing value) as int64, so that it
    is inferred, labelled and scored like an integer column."""
    if not pd.api.types.is_float_dtype(y):
        return y
    values = y.to_numpy(dtype=np.float64, na_value=np.nan)
    if len(values) and np.isfinite(values).all() and (values % 1 == 0).all() and np.abs(values).max() < 2**53:
        return y.astype(np.int64)
    return y


def target_codes(y: pd.Series, task: str, target: str) -> tuple[list | None, np.ndarray]:
    """Class labels and their codes (classification), or the target as float64 (regression: a numeric column,
    as :func:`check_task` made sure)."""
    if task == "classification":
        classes = sorted(y.unique().tolist(), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise UsageError(
                f"target '{target}' has a single class ({classes[0]!r}): classification needs at "
                f"least two; check the target column or use task=regression"
            )
        return classes, y.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    values = y.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise UsageError(
            f"target '{target}' holds inf/-inf in {int(np.isinf(values).sum())} rows: replace them "
            f"with finite values or drop those rows"
        )
    return None, values
