"""Preprocessing of tables and images: what a model fitted on the training split does to raw input, and
carries inside the logged model so that it takes raw rows (see :mod:`hyperflow.core.column_kinds` for the
column kinds, :mod:`hyperflow.core.tables` for the normalisation shared by fitting and serving)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hyperflow.core.column_kinds import MAX_CATEGORIES, column_kinds
from hyperflow.core.table_files import bounded
from hyperflow.core.tables import MissingColumns, nonfinite_columns, normalize_columns, select_columns
from hyperflow.errors import UsageError

if TYPE_CHECKING:  # scikit-learn is imported when a preprocessor is fitted, not when a command starts
    from sklearn.compose import ColumnTransformer

log = logging.getLogger(__name__)


@dataclass
class Preprocessor:
    """Raw input -> float32 model input. Tables go through a fitted ColumnTransformer after
    :func:`hyperflow.core.tables.normalize_columns`; images are scaled by the training pixels' mean and std.
    Picklable: the logged model carries it."""

    kind: str  # "table" | "image"
    columns: list[str] = field(default_factory=list)  # the feature columns the model uses, in order
    categorical: list[str] = field(default_factory=list)
    transformer: ColumnTransformer | None = None
    pixel_mean: float = 0.0
    pixel_std: float = 1.0
    image_shape: tuple[int, ...] | None = None  # (C, H, W) of image inputs
    kinds: dict[str, str] = field(default_factory=dict)  # column -> numeric | datetime | categorical
    dtypes: dict[str, str] = field(default_factory=dict)  # column -> its dtype in the training file
    dropped: list[str] = field(default_factory=list)  # ID-like columns left out

    def column_kinds(self) -> dict[str, str]:
        """Kinds of the used columns (models saved before kinds were recorded: from ``categorical``)."""
        kinds = getattr(self, "kinds", None)
        return kinds or {c: "categorical" if c in self.categorical else "numeric" for c in self.columns}

    def transform(self, raw: Any) -> np.ndarray:
        """Training rows (or images) as float32 model input; values too large for float32 become inf, which
        training refuses (:func:`check_finite_features`)."""
        if self.kind == "table":
            frame = select_columns(raw, self.columns, allow_missing=False)
            return self._scaled(normalize_columns(frame, self.column_kinds())).astype(np.float32)
        images = np.asarray(raw, dtype=np.float32)
        if self.image_shape is not None and images.ndim == len(self.image_shape):  # (N, H, W) without channel
            images = images[:, None]
        return (images - self.pixel_mean) / self.pixel_std

    def transform_rows(self, raw: Any, allow_missing_columns: bool = False) -> np.ndarray:
        """Rows to score as float32 model input. Input without any of the model's columns raises
        :class:`MissingColumns` (even with ``allow_missing_columns``: there would be nothing to score);
        zero rows give zero rows. A value that cannot be used is treated as missing (imputed, as the model
        does for missing values) with one warning per column: text that is not a number or a date, inf,
        and numbers so large that, scaled, they leave float32's range. Those are not clipped: they lie so
        far outside the training data that no prediction from them would mean anything, and as inf they
        would make the prediction NaN."""
        frame = raw if isinstance(raw, pd.DataFrame) else pd.DataFrame(raw)
        if not any(str(c) in self.columns for c in frame.columns):
            raise MissingColumns(
                f"the input has none of the model's feature columns (it expects "
                f"{bounded(self.columns)}): send rows with the columns the model was "
                f"trained on (extra columns are ignored)"
            )
        frame = select_columns(frame, self.columns, allow_missing_columns)
        if frame.empty:
            return np.zeros((0, len(self.transformer.get_feature_names_out())), dtype=np.float32)
        kinds = self.column_kinds()
        values = normalize_columns(frame, kinds)
        out = self._scaled(values)
        numeric = [c for c in self.columns if kinds[c] != "categorical"]  # the transformer's first outputs
        too_large = ~(np.abs(out[:, : len(numeric)]) <= np.finfo(np.float32).max)
        lost = values[numeric].isna().to_numpy(dtype=bool) | too_large  # missing after conversion: given or not?
        for j in np.flatnonzero(lost.any(axis=0)):  # a look at each column would take minutes on a wide table
            name = numeric[j]
            unusable = _given(frame[name]) & lost[:, j]
            if unusable.any():
                example = frame[name].to_numpy()[unusable.argmax()]
                log.warning(
                    "column '%s': %d row(s) hold values that cannot be used as %s (e.g. %r); they are "
                    "treated as missing (imputed)",
                    name,
                    unusable.sum(),
                    "dates" if kinds[name] == "datetime" else "numbers",
                    example.item() if isinstance(example, np.generic) else example,
                )
        if too_large.any():
            values[numeric] = values[numeric].mask(too_large)
            out = self._scaled(values)
        return out.astype(np.float32)

    def _scaled(self, values: pd.DataFrame) -> np.ndarray:
        out = self.transformer.transform(values)
        return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)


def _given(col: pd.Series) -> np.ndarray:
    """Cells that hold a value (not null, not blank text)."""
    blank = col.map(lambda v: isinstance(v, str) and not v.strip())
    return (col.notna() & ~blank).to_numpy(dtype=bool)


def fit_preprocessor(
    features: pd.DataFrame, train_rows: np.ndarray, image_shape: tuple[int, ...] | None = None
) -> Preprocessor:
    """Decide each column's kind, refuse infinite values, and fit the transformer on the training rows."""
    kinds = column_kinds(features)
    dropped = [c for c, k in kinds.items() if k == "id"]
    if dropped:
        log.warning(
            "leaving out ID-like column(s) %s: almost every value is distinct, so they cannot "
            "generalise (hash or group them into a column with fewer values to use them)",
            ", ".join(dropped),
        )
    kinds = {c: k for c, k in kinds.items() if k != "id"}
    if not kinds:
        raise UsageError(
            f"no usable feature columns: {', '.join(dropped)} look like IDs (almost every value "
            f"distinct); add feature columns"
        )
    infinite = nonfinite_columns(features, kinds)
    if infinite:
        listed = ", ".join(f"'{c}' ({n} rows)" for c, n in infinite.items())
        raise UsageError(
            f"feature column(s) {listed} hold inf/-inf: replace them with finite values, or leave "
            f"the cells empty (missing values are imputed)"
        )
    columns = list(kinds)
    numeric = [c for c in columns if kinds[c] != "categorical"]
    categorical = [c for c in columns if kinds[c] == "categorical"]
    transformer = _table_transformer(numeric, categorical)
    transformer.fit(normalize_columns(features.iloc[train_rows], kinds))  # training split only
    return Preprocessor(
        "table",
        columns,
        categorical,
        transformer,
        image_shape=image_shape,
        kinds=kinds,
        dtypes={c: str(features[c].dtype) for c in columns},
        dropped=dropped,
    )


def check_finite_features(X: np.ndarray, pre: Preprocessor, name: str) -> None:
    """Values so large that scaling overflows (or leaves float32's range) are refused, naming the column."""
    if np.isfinite(X).all():
        return
    numeric = [c for c in pre.columns if pre.kinds.get(c) != "categorical"]
    bad_positions = np.flatnonzero(~np.isfinite(X).all(axis=0))
    columns = [numeric[i] for i in bad_positions if i < len(numeric)] or ["(one-hot columns)"]
    raise UsageError(
        f"{name}: column(s) {', '.join(columns)} hold values too large to train on (they overflow "
        f"after scaling): rescale them (e.g. divide by a power of ten or take a log)"
    )


def json_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as a client sends them in JSON (numbers, strings, bools, nulls; dates as ISO text): the
    model's input example, so the logged example is exactly what serving receives."""
    records = json.loads(frame.to_json(orient="records", date_format="iso", default_handler=str))
    return pd.DataFrame.from_records(records, columns=list(frame.columns))


def _table_transformer(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Impute + scale numeric columns; impute + one-hot categorical ones (unknown levels ignored, at most
    MAX_CATEGORIES levels per column, rarer ones pooled)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist", sparse_output=False, max_categories=MAX_CATEGORIES
                    ),
                ),
                categorical,
            ),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
