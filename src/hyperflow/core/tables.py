"""Raw values to numbers, the raw-row contract: a model trained on a table accepts rows as clients really
send them — ints for a float column, floats for an int column, bools, numbers as text, ``null`` — because
every value goes through :func:`normalize_columns` both when the model is fitted and when it predicts (the
kinds of :mod:`hyperflow.core.column_kinds` decide how).

Pure pandas/numpy (no torch, no MLflow).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TRUE_WORDS = {"true", "yes", "y", "t"}
FALSE_WORDS = {"false", "no", "n", "f"}
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


class MissingColumns(ValueError):
    """Rows to predict lack feature columns the model was trained on."""


def plain_numbers(frame: pd.DataFrame, names: Any) -> list[str]:
    """The columns of ``names`` held as numpy bool, int or float (not pandas' nullable types): converted in one
    pass over all of them, which keeps a table of thousands of columns fast (a pass per column takes minutes)."""
    dtypes = dict(zip(frame.columns, frame.dtypes))
    return [n for n in names if isinstance(dtypes[n], np.dtype) and dtypes[n].kind in "biuf"]


def to_datetime(col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col
        if getattr(col.dt, "tz", None) is None:
            out = col.dt.tz_localize("UTC")
        return out.dt.tz_convert("UTC")
    return pd.to_datetime(col.astype(object).where(col.notna(), None), errors="coerce", utc=True, format="mixed")


def _cell_number(value: Any) -> float:
    """One raw value as a float: numbers, bools, numbers and true/false as text; anything else is missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return 1.0
    if text in FALSE_WORDS:
        return 0.0
    try:
        return float(text)
    except ValueError:
        return np.nan


def to_numbers(col: pd.Series) -> np.ndarray:
    """A numeric column of any dtype (nullable, bool, object) as float64, missing as NaN."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.fromiter((_cell_number(v) for v in col), dtype=np.float64, count=len(col))


def _category(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 3.0 sent for the level "3"
    return str(value)


def normalize_columns(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """One dtype per column, the same when fitting and when serving: categoricals as strings (NaN for
    missing), numbers and datetimes as float64 with non-finite values as missing."""
    plain = plain_numbers(frame, [n for n, k in kinds.items() if k == "numeric"])
    done = set(plain)
    out = {}
    for name, kind in kinds.items():
        if name in done:
            continue
        col = frame[name]
        if kind == "categorical":
            out[name] = pd.Series([_category(v) for v in col], index=frame.index, dtype=object)
            continue
        if kind == "datetime":
            stamps = to_datetime(col)
            values = ((stamps - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = to_numbers(col)
        values = np.where(np.isfinite(values), values, np.nan)
        out[name] = pd.Series(values, index=frame.index)
    if not plain:
        return pd.DataFrame(out, index=frame.index)
    block = frame[plain].to_numpy(dtype=np.float64)
    numbers = pd.DataFrame(np.where(np.isfinite(block), block, np.nan), index=frame.index, columns=plain)
    return pd.concat([numbers, pd.DataFrame(out, index=frame.index)], axis=1)[list(kinds)]


def nonfinite_columns(features: pd.DataFrame, kinds: dict[str, str]) -> dict[str, int]:
    """Numeric columns holding inf/-inf (or text such as 'inf'), with how many rows do."""
    plain = plain_numbers(features, [n for n, k in kinds.items() if k == "numeric"])
    counts = np.isinf(features[plain].to_numpy(dtype=np.float64)).sum(axis=0) if plain else []
    found = {name: int(n) for name, n in zip(plain, counts) if n}
    done = set(plain)
    for name, kind in kinds.items():
        if kind == "numeric" and name not in done:
            values = to_numbers(features[name])
            count = int(np.isinf(values).sum())
            if count:
                found[name] = count
    return found


def select_columns(raw: Any, columns: list[str], allow_missing: bool) -> pd.DataFrame:
    """The model's feature columns of raw input rows, in training order; extra columns are ignored.
    Columns the rows lack raise :class:`MissingColumns` naming them, unless ``allow_missing`` (then they
    are imputed like missing values)."""
    frame = raw if isinstance(raw, pd.DataFrame) else pd.DataFrame(raw)
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    missing = [c for c in columns if c not in frame.columns]
    if missing and not allow_missing:
        shown = ", ".join(missing[:20]) + (f" … ({len(missing)} in all)" if len(missing) > 20 else "")
        what = "none of the model's feature columns" if len(missing) == len(columns) else "missing feature columns"
        raise MissingColumns(
            f"the input has {what}: {shown}. Send every column the model was trained on "
            f"(extra columns are ignored), or set allow_missing_columns=true to impute them"
        )
    return frame.reindex(columns=columns)
