"""What each feature column of a table is (its kind decides its preprocessing):

- ``numeric``: every integer (signed, unsigned, nullable ``Int64``), float and ``bool`` column, and text
  columns whose values are nearly all numbers (e.g. ``"?"`` for missing): float64, ``inf`` treated as missing
  at predict time (and refused in training data);
- ``datetime``: datetime columns and text columns of dates: days since 1970-01-01 (UTC), a number;
- ``categorical``: strings, ``category`` and mixed object columns: one-hot encoded (at most
  ``MAX_CATEGORIES`` levels, rarer levels share one);
- dropped: ID-like text columns (almost every value distinct, e.g. names or keys): they cannot generalise,
  so they are left out with a warning and a model never asks for them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hyperflow.core.tables import FALSE_WORDS, TRUE_WORDS, plain_numbers, to_datetime

MAX_CATEGORIES = 50  # one-hot levels per column; rarer levels are pooled by OneHotEncoder
ID_MIN_DISTINCT = 50  # a text column is ID-like with at least this many distinct values ...
ID_DISTINCT_SHARE = 0.5  # ... that are more than this share of its non-missing values
NUMERIC_TEXT_SHARE = 0.95  # a text column whose values are at least this share numbers is numeric


def column_kinds(features: pd.DataFrame) -> dict[str, str]:
    """``numeric``, ``datetime``, ``categorical`` or ``id`` (to drop) for every feature column."""
    plain = set(plain_numbers(features, features.columns))
    kinds = {}
    for name in features.columns:
        if name in plain:
            kinds[name] = "numeric"
            continue
        col = features[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            kinds[name] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(col):
            kinds[name] = "datetime"
        elif isinstance(col.dtype, pd.CategoricalDtype):
            kinds[name] = "categorical"
        else:
            kinds[name] = _text_kind(col)
    return kinds


def _text_kind(col: pd.Series) -> str:
    values = col.dropna()
    if values.empty:
        return "numeric"  # nothing to learn from; imputed as a constant
    if values.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "numeric"
    text = values.astype(str).str.strip()
    if pd.to_numeric(text, errors="coerce").notna().mean() >= NUMERIC_TEXT_SHARE:
        return "numeric"
    if text.str.lower().isin(TRUE_WORDS | FALSE_WORDS).all():
        return "numeric"
    sample = text.head(200)
    if sample.str.contains(r"\d", regex=True).all() and to_datetime(sample).notna().mean() >= NUMERIC_TEXT_SHARE:
        return "datetime"
    distinct = text.nunique()
    if distinct >= ID_MIN_DISTINCT and distinct > ID_DISTINCT_SHARE * len(text):
        return "id"
    return "categorical"
