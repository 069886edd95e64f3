"""Which parameters mattered: permutation importance of a random forest fitted on the trials
(an fANOVA-style estimate with scikit-learn's well-kept pieces)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import permutation_importance


def parameter_importance(params: pd.DataFrame, losses: pd.Series, seed: int = 0) -> pd.DataFrame | None:
    """Columns ``parameter``, ``importance``, ``std``, most important first; None with < 5 trials or
    nothing that varies."""
    varying = [c for c in params.columns if params[c].astype(str).nunique() > 1]
    if len(params) < 5 or not varying:
        return None
    frame = params[varying].copy()
    numeric = [c for c in varying if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    for c in numeric:
        frame[c] = frame[c].fillna(frame[c].median())
    encoded = pd.get_dummies(frame, columns=[c for c in varying if c not in numeric], dtype=float)
    groups = {c: [e for e in encoded.columns if e == c or e.startswith(f"{c}_")] for c in varying}
    target = np.log(losses.clip(lower=1e-12)) if (losses > 0).all() else losses
    forest = RandomForestRegressor(n_estimators=50, min_samples_leaf=2, random_state=seed).fit(encoded, target)
    result = permutation_importance(forest, encoded, target, n_repeats=5, random_state=seed)
    per_column = dict(zip(encoded.columns, zip(result.importances_mean, result.importances_std)))
    rows = [(name, sum(per_column[c][0] for c in cols), float(np.sqrt(sum(per_column[c][1] ** 2 for c in cols))))
            for name, cols in groups.items()]
    return pd.DataFrame(rows, columns=["parameter", "importance", "std"]).sort_values("importance", ascending=False)
