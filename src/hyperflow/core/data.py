"""Datasets: built-in sets, CSV/Parquet/NPZ files, seeded splits and scikit-learn preprocessing.

Everything ends as in-memory float tensors (the trainer indexes them directly) plus a
:class:`Preprocessor` fitted on the training split only, which the logged MLflow model reuses so that
it accepts raw rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hyperflow.errors import UsageError
from hyperflow.core.tables import (MAX_CATEGORIES, check_path, check_target, column_kinds,
                              columns_text, nonfinite_columns, normalize_columns, precheck, read_table,
                              select_columns)

if TYPE_CHECKING:  # torch and scikit-learn are imported when data is loaded, not when a command starts
    import torch
    from sklearn.compose import ColumnTransformer

log = logging.getLogger(__name__)

BUILTINS = ("digits", "breast_cancer", "wine", "diabetes", "shapes")
SHAPES_VERSION = "1"
MAX_CLASSES_FOR_INT_TARGET = 20
_SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}


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

    def transform(self, raw: Any, allow_missing_columns: bool = False) -> np.ndarray:
        if self.kind == "table":
            frame = select_columns(raw, self.columns, allow_missing_columns)
            out = self.transformer.transform(normalize_columns(frame, self.column_kinds()))
            return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float32)
        images = np.asarray(raw, dtype=np.float32)
        if self.image_shape is not None and images.ndim == len(self.image_shape):  # (N, H, W) without channel
            images = images[:, None]
        return (images - self.pixel_mean) / self.pixel_std


@dataclass
class Dataset:
    """Splits as tensors plus what the model, the metrics and the logged model need to know."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    output_size: int
    preprocessor: Preprocessor
    fingerprint: str
    source: str
    classes: list | None = None  # original labels, index = class id
    target: str | None = None
    target_mean: float = 0.0  # regression targets are standardised for training
    target_std: float = 1.0
    image_shape: tuple[int, ...] | None = None  # tables that are images too (digits: 1x8x8)
    raw_example: Any = None  # a few raw input rows, for the model's signature
    raw_all: Any = None  # the raw data (frame, or (X, y) arrays) for mlflow.log_input
    split_index: dict[str, np.ndarray] | None = None  # row positions in raw_all of train / val / test

    @property
    def default_model_name(self) -> str:
        """The registered name used when none is given: ``hyperflow-<data>`` for a built-in set,
        ``hyperflow-<file>-<target>`` for a file (so two targets of one file never share a name)."""
        builtin = self.source.startswith("builtin:")
        return f"hyperflow-{self.name}" if builtin or not self.target else f"hyperflow-{self.name}-{self.target}"

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "val": len(self.X_val), "test": len(self.X_test)}


def precheck_source(data: str, target: str | None) -> None:
    """The checks of ``data=`` and ``target=`` that need neither torch nor MLflow (file type, header, the
    target column): run first, so that a mistake is reported in a fraction of a second."""
    precheck(data, target, BUILTINS)


def load_dataset(data: str, target: str | None = None, task: str | None = None, *, seed: int = 42,
                 val_size: float = 0.15, test_size: float = 0.15, split_column: str | None = None) -> Dataset:
    """Load a built-in set or a file, split it (seeded; stratified for classes) and preprocess it."""
    path = check_path(data, BUILTINS)
    if path is None:
        if target is not None and data != "shapes":
            log.info("target is ignored for the built-in dataset %s", data)
        if data == "shapes":
            X, y = make_shapes()
            return _from_arrays("shapes", X, y, task, f"builtin:shapes:v{SHAPES_VERSION}", "builtin:shapes",
                                seed, val_size, test_size)
        import sklearn

        frame, target = _builtin_frame(data)
        return _from_frame(data, frame, target, task, f"builtin:{data}:sklearn-{sklearn.__version__}",
                           f"builtin:{data}", seed, val_size, test_size, split_column,
                           image_shape=(1, 8, 8) if data == "digits" else None)
    fingerprint = "sha256:" + _file_hash(path)
    if path.suffix.lower() == ".npz":
        X, y = _read_npz(path)
        return _from_arrays(path.stem, X, y, task, fingerprint, str(path.resolve()), seed, val_size, test_size)
    frame = read_table(path)
    check_target(frame, target, data)
    return _from_frame(path.stem, frame, target, task, fingerprint, str(path.resolve()), seed, val_size,
                       test_size, split_column)


# ---------------------------------------------------------------------------------------------- sources

def _builtin_frame(name: str) -> tuple[pd.DataFrame, str]:
    from sklearn import datasets as skdatasets

    loader = getattr(skdatasets, f"load_{name}")
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    target = "target"
    if name != "diabetes" and getattr(bunch, "target_names", None) is not None:
        names = np.asarray(bunch.target_names)
        frame[target] = names[frame[target].to_numpy()]
    return frame, target


def make_shapes(n: int = 512, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic segmentation set: noisy grayscale images with 1-3 random discs/rectangles and their
    binary masks. Fixed seed, so it is the same data everywhere (versioned by SHAPES_VERSION)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(4, size - 4, 2)
            if rng.random() < 0.5:
                r = rng.uniform(3, size / 5)
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
            else:
                h, w = rng.uniform(3, size / 4, 2)
                shape = (abs(yy - cy) <= h) & (abs(xx - cx) <= w)
            mask |= shape
        images[i, 0] = mask * rng.uniform(0.5, 1.0) + rng.normal(0, 0.25, (size, size))
        masks[i, 0] = mask
    return images, masks


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive or "y" not in archive:
                raise UsageError(f"'{path}' must hold arrays named X and y, found {', '.join(archive.files)}")
            return archive["X"], archive["y"]
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read '{path}' as NPZ ({exc}): save it with numpy.savez(path, X=..., y=...)") \
            from None


# ---------------------------------------------------------------------------------------------- tables

def infer_task(y: pd.Series) -> str:
    """classification for string/bool/category or few-valued integer targets, regression otherwise."""
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= MAX_CLASSES_FOR_INT_TARGET:
        return "classification"
    return "regression"


def _from_frame(name: str, frame: pd.DataFrame, target: str, task: str | None, fingerprint: str, source: str,
                seed: int, val_size: float, test_size: float, split_column: str | None,
                image_shape: tuple[int, ...] | None = None) -> Dataset:
    frame.columns = [str(c) for c in frame.columns]
    check_target(frame, target, name)
    if split_column is not None and split_column not in frame.columns:
        raise UsageError(f"split_column '{split_column}' is not in {name}: its columns are {columns_text(frame)}")
    y_all = frame[target]
    if y_all.isna().all():
        raise UsageError(f"target column '{target}' has no values (all missing): choose another target column")
    if y_all.isna().any():
        log.warning("dropping %d rows whose target '%s' is missing", int(y_all.isna().sum()), target)
        frame = frame[y_all.notna()].reset_index(drop=True)
        y_all = frame[target]
    task = task or infer_task(y_all)
    if task == "segmentation":
        raise UsageError(f"task=segmentation needs images and masks (an .npz with X and y), but {name} is a table: "
                         f"use task=classification or regression")
    features = frame.drop(columns=[target] + ([split_column] if split_column else []))
    if features.shape[1] == 0:
        raise UsageError(f"{name} has no feature columns besides the target '{target}'")
    classes, codes = _target_codes(y_all, task, target)
    index = np.arange(len(frame))
    if split_column:
        words = frame[split_column].astype(str).str.strip().str.lower().map(_SPLIT_WORDS)
        if words.isna().any():
            bad = frame[split_column][words.isna()].astype(str).unique()[:3]
            raise UsageError(f"split_column '{split_column}' has values {', '.join(bad)}: use train, val or test")
        parts = {p: index[(words == p).to_numpy()] for p in ("train", "val", "test")}
        if not len(parts["train"]) or not len(parts["val"]):
            raise UsageError(f"split_column '{split_column}' needs rows marked train and val")
    else:
        parts = _split(index, codes if task == "classification" else None, seed, val_size, test_size, target)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # overflow is checked right after, by column
        warnings.simplefilter("ignore", RuntimeWarning)
        pre = fit_preprocessor(features, parts["train"], image_shape)
        X = pre.transform(features)
        _check_finite_features(X, pre, name)
        y_mean, y_std = 0.0, 1.0
        if task == "regression":
            train_y = codes[parts["train"]]
            y_mean, y_std = float(train_y.mean()), float(train_y.std()) or 1.0
            y = ((codes - y_mean) / y_std).astype(np.float32)
            if not (np.isfinite(y_mean) and np.isfinite(y_std) and np.isfinite(y).all()):
                raise UsageError(f"target '{target}' has values too large to train on (largest magnitude "
                                 f"{np.abs(codes).max():.3g}): rescale it (e.g. divide by 1e6 or take a log)")
        else:
            y = codes
    import torch

    tensors = {p: (torch.from_numpy(X[i]), torch.from_numpy(y[i])) for p, i in parts.items()}
    return Dataset(
        name=name, task=task,
        X_train=tensors["train"][0], y_train=tensors["train"][1],
        X_val=tensors["val"][0], y_val=tensors["val"][1],
        X_test=tensors["test"][0], y_test=tensors["test"][1],
        input_shape=(X.shape[1],), output_size=len(classes) if classes else 1, preprocessor=pre,
        fingerprint=fingerprint, source=source, classes=classes, target=target, target_mean=y_mean,
        target_std=y_std, image_shape=image_shape, raw_example=json_rows(features[pre.columns].head(5)),
        raw_all=frame, split_index=parts,
    )


def _target_codes(y: pd.Series, task: str, target: str) -> tuple[list | None, np.ndarray]:
    """Class labels and their codes (classification), or the target as float64 (regression)."""
    if task == "classification":
        classes = sorted(y.unique().tolist(), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise UsageError(f"target '{target}' has a single class ({classes[0]!r}): classification needs at "
                             f"least two; check the target column or use task=regression")
        return classes, y.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise UsageError(f"task=regression needs a numeric target, but '{target}' holds {y.dtype} values: "
                         f"use task=classification")
    values = y.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise UsageError(f"target '{target}' holds inf/-inf in {int(np.isinf(values).sum())} rows: replace them "
                         f"with finite values or drop those rows")
    return None, values


def fit_preprocessor(features: pd.DataFrame, train_rows: np.ndarray,
                     image_shape: tuple[int, ...] | None = None) -> Preprocessor:
    """Decide each column's kind, refuse infinite values, and fit the transformer on the training rows."""
    kinds = column_kinds(features)
    dropped = [c for c, k in kinds.items() if k == "id"]
    if dropped:
        log.warning("leaving out ID-like column(s) %s: almost every value is distinct, so they cannot "
                    "generalise (hash or group them into a column with fewer values to use them)",
                    ", ".join(dropped))
    kinds = {c: k for c, k in kinds.items() if k != "id"}
    if not kinds:
        raise UsageError(f"no usable feature columns: {', '.join(dropped)} look like IDs (almost every value "
                         f"distinct); add feature columns")
    infinite = nonfinite_columns(features, kinds)
    if infinite:
        listed = ", ".join(f"'{c}' ({n} rows)" for c, n in infinite.items())
        raise UsageError(f"feature column(s) {listed} hold inf/-inf: replace them with finite values, or leave "
                         f"the cells empty (missing values are imputed)")
    columns = list(kinds)
    numeric = [c for c in columns if kinds[c] != "categorical"]
    categorical = [c for c in columns if kinds[c] == "categorical"]
    transformer = _table_transformer(numeric, categorical)
    transformer.fit(normalize_columns(features.iloc[train_rows], kinds))  # training split only
    return Preprocessor("table", columns, categorical, transformer, image_shape=image_shape, kinds=kinds,
                        dtypes={c: str(features[c].dtype) for c in columns}, dropped=dropped)


def _check_finite_features(X: np.ndarray, pre: Preprocessor, name: str) -> None:
    """Values so large that scaling overflows (or leaves float32's range) are refused, naming the column."""
    if np.isfinite(X).all():
        return
    numeric = [c for c in pre.columns if pre.kinds.get(c) != "categorical"]
    bad_positions = np.flatnonzero(~np.isfinite(X).all(axis=0))
    columns = [numeric[i] for i in bad_positions if i < len(numeric)] or ["(one-hot columns)"]
    raise UsageError(f"{name}: column(s) {', '.join(columns)} hold values too large to train on (they overflow "
                     f"after scaling): rescale them (e.g. divide by a power of ten or take a log)")


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
        [("numeric", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
          numeric),
         ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                                       OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                                     max_categories=MAX_CATEGORIES)), categorical)],
        remainder="drop", sparse_threshold=0.0,
    )


def _split(index: np.ndarray, labels: np.ndarray | None, seed: int, val_size: float, test_size: float,
           target: str | None) -> dict[str, np.ndarray]:
    """Seeded train/val/test split, stratified when labels are given."""
    from sklearn.model_selection import train_test_split

    try:
        parts: dict[str, np.ndarray] = {"test": index[:0]}
        rest = index
        if test_size > 0:
            rest, parts["test"] = train_test_split(index, test_size=test_size, random_state=seed,
                                                   stratify=None if labels is None else labels)
        val_share = val_size / (1 - test_size)
        parts["train"], parts["val"] = train_test_split(
            rest, test_size=val_share, random_state=seed + 1, stratify=None if labels is None else labels[rest])
    except ValueError as exc:
        raise UsageError(f"cannot split the data: {exc} — a class of '{target}' has too few rows for a "
                         f"stratified split; add rows, merge rare classes or set split_column") from None
    return parts


# ---------------------------------------------------------------------------------------------- arrays

def _from_arrays(name: str, X: np.ndarray, y: np.ndarray, task: str | None, fingerprint: str, source: str,
                 seed: int, val_size: float, test_size: float) -> Dataset:
    if len(X) != len(y):
        raise UsageError(f"{name}: X has {len(X)} samples but y has {len(y)}: they must match")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:  # features: treat as a table with columns x0..xn
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        frame["y"] = y
        return _from_frame(name, frame, "y", task, fingerprint, source, seed, val_size, test_size, None)
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4:
        raise UsageError(f"{name}: X must be (N, features), (N, H, W) or (N, C, H, W), got shape {X.shape}")
    y = np.asarray(y)
    is_mask = y.ndim >= 3 and y.shape[-2:] == X.shape[-2:]
    task = task or ("segmentation" if is_mask else None)
    if task == "segmentation":
        if not is_mask:
            raise UsageError(f"{name}: segmentation needs masks y shaped like the images, got {y.shape}")
        y = y.reshape(len(y), 1, *y.shape[-2:]).astype(np.float32)
        if not np.isin(y, (0.0, 1.0)).all():
            raise UsageError(f"{name}: masks must be binary (0/1); found values {np.unique(y)[:5]}")
        classes, labels = None, None
    else:
        series = pd.Series(y.reshape(len(y)))
        task = task or infer_task(series)
        classes = sorted(series.unique().tolist()) if task == "classification" else None
        if classes is not None and len(classes) < 2:
            raise UsageError(f"{name}: y has a single class ({classes[0]!r}); classification needs at least two")
        y = (series.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64) if classes
             else series.to_numpy(np.float32))
        labels = y if classes else None
    parts = _split(np.arange(len(X)), labels, seed, val_size, test_size, "y")
    train = X[parts["train"]]
    pre = Preprocessor("image", pixel_mean=float(train.mean()), pixel_std=float(train.std()) or 1.0,
                       image_shape=tuple(X.shape[1:]))
    Xs = pre.transform(X)
    y_mean, y_std = 0.0, 1.0
    if task == "regression":
        y_mean, y_std = float(y[parts["train"]].mean()), float(y[parts["train"]].std()) or 1.0
        y = ((y - y_mean) / y_std).astype(np.float32)
    import torch

    t = {p: (torch.from_numpy(Xs[i]), torch.from_numpy(y[i])) for p, i in parts.items()}
    return Dataset(
        name=name, task=task, X_train=t["train"][0], y_train=t["train"][1], X_val=t["val"][0], y_val=t["val"][1],
        X_test=t["test"][0], y_test=t["test"][1], input_shape=tuple(X.shape[1:]),
        output_size=len(classes) if classes else 1, preprocessor=pre, fingerprint=fingerprint, source=source,
        classes=classes, target_mean=y_mean, target_std=y_std, image_shape=tuple(X.shape[1:]),
        raw_example=X[:2], raw_all=(X, np.asarray(y)), split_index=parts,
    )
