"""Which parameters mattered: permutation importance of a random forest fitted on the trials
(an fANOVA-style estimate with scikit-learn's well-kept pieces)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import permutation_importance


def parameter_importance(params: pd.DataFrame, losses: pd.Series, seed: int = 0) -> pd.DataFrame | None:
    """Columns ``parameter``, ``importance``, ``std``, most important first; None with < 5 trials or
    nothing that varies. One column per parameter, so that permuting it permutes the whole parameter: a
    choice as its category's code (a forest splits codes as well as one-hot columns, and a one-hot column
    permuted on its own would score rows with two categories or none), a value a trial did not have (a
    conditional's, e.g. sgd's momentum under adam) below every value it did."""
    varying = [c for c in params.columns if params[c].astype(str).nunique() > 1]
    if len(params) < 5 or not varying:
        return None
    frame = pd.DataFrame(index=params.index)
    for c in varying:
        column = params[c]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.astype(float)
            present = values.dropna()
            frame[c] = values.fillna(present.min() - 1.0 - (present.max() - present.min()) if len(present) else 0.0)
        else:
            frame[c] = pd.Categorical(column.astype(str).where(column.notna())).codes.astype(float)
    target = np.log(losses.clip(lower=1e-12)) if (losses > 0).all() else losses
    forest = RandomForestRegressor(n_estimators=50, min_samples_leaf=2, random_state=seed).fit(frame, target)
    result = permutation_importance(forest, frame, target, n_repeats=5, random_state=seed)
    return pd.DataFrame(
        {"parameter": varying, "importance": result.importances_mean, "std": result.importances_std}
    ).sort_values("importance", ascending=False)
