"""Loading a built-in set or a CSV/Parquet/NPZ file into a :class:`Dataset`: the target coded, the rows split
(seeded), the preprocessing fitted on the training split.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hyperflow.core.arrays import check_layout, finite_images
from hyperflow.core.builtins import BUILTINS, SHAPES_VERSION, builtin_frame, make_shapes
from hyperflow.core.data import Dataset
from hyperflow.core.preprocessing import Preprocessor, check_finite_features, fit_preprocessor, json_rows
from hyperflow.core.splits import marked_split, seeded_split
from hyperflow.core.table_files import check_path, check_target, check_task, columns_text, precheck, read_table
from hyperflow.core.targets import infer_task, target_codes, whole_numbers_as_int
from hyperflow.errors import UsageError

log = logging.getLogger(__name__)


def precheck_source(data: str, target: str | None, task: str | None = None) -> None:
    """The checks of ``data=``, ``target=`` and ``task=`` that need neither torch nor MLflow (file type, header,
    the target column, the task its first rows allow): run first, so that a mistake is reported in a fraction
    of a second."""
    precheck(data, target, BUILTINS, task)


def load_dataset(
    data: str,
    target: str | None = None,
    task: str | None = None,
    *,
    seed: int = 42,
    val_size: float = 0.15,
    test_size: float = 0.15,
    split_column: str | None = None,
) -> Dataset:
    """Load a built-in set or a file, split it (seeded; stratified for classes) and preprocess it."""
    path = check_path(data, BUILTINS)
    if path is None:
        if target is not None and data != "shapes":
            log.info("target is ignored for the built-in dataset %s", data)
        if data == "shapes":
            X, y = make_shapes()
            return _from_arrays(
                "shapes", X, y, task, f"builtin:shapes:v{SHAPES_VERSION}", "builtin:shapes", seed, val_size, test_size
            )
        import sklearn

        frame, target = builtin_frame(data)
        return _from_frame(
            data,
            frame,
            target,
            task,
            f"builtin:{data}:sklearn-{sklearn.__version__}",
            f"builtin:{data}",
            seed,
            val_size,
            test_size,
            split_column,
            image_shape=(1, 8, 8) if data == "digits" else None,
        )
    fingerprint = "sha256:" + _file_hash(path)
    if path.suffix.lower() == ".npz":
        X, y = _read_npz(path)
        return _from_arrays(path.stem, X, y, task, fingerprint, str(path.resolve()), seed, val_size, test_size)
    frame = read_table(path)
    return _from_frame(
        path.stem, frame, target, task, fingerprint, str(path.resolve()), seed, val_size, test_size, split_column
    )


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
        raise UsageError(f"cannot read '{path}' as NPZ ({exc}): save it with numpy.savez(path, X=..., y=...)") from None


def _from_frame(
    name: str,
    frame: pd.DataFrame,
    target: str,
    task: str | None,
    fingerprint: str,
    source: str,
    seed: int,
    val_size: float,
    test_size: float,
    split_column: str | None,
    image_shape: tuple[int, ...] | None = None,
) -> Dataset:
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
    whole = whole_numbers_as_int(frame[target])
    task = task or infer_task(whole)
    if task == "classification":  # labels 0, 1 whether or not a missing value made the column float
        frame = frame.assign(**{target: whole})
    y_all = frame[target]
    check_task(y_all, task, target, name)
    features = frame.drop(columns=[target] + ([split_column] if split_column else []))
    if features.shape[1] == 0:
        raise UsageError(f"{name} has no feature columns besides the target '{target}'")
    classes, codes = target_codes(y_all, task, target)
    index = np.arange(len(frame))
    if split_column:
        parts = marked_split(frame[split_column], split_column, test_size)
    else:
        parts = seeded_split(
            index, codes if task == "classification" else None, seed, val_size, test_size, target, classes
        )
    with np.errstate(all="ignore"), warnings.catch_warnings():  # overflow is checked right after, by column
        warnings.simplefilter("ignore", RuntimeWarning)
        pre = fit_preprocessor(features, parts["train"], image_shape)
        X = pre.transform(features)
        check_finite_features(X, pre, name)
        y_mean, y_std = 0.0, 1.0
        if task == "regression":
            train_y = codes[parts["train"]]
            y_mean, y_std = float(train_y.mean()), float(train_y.std()) or 1.0
            y = ((codes - y_mean) / y_std).astype(np.float32)
            if not (np.isfinite(y_mean) and np.isfinite(y_std) and np.isfinite(y).all()):
                raise UsageError(
                    f"target '{target}' has values too large to train on (largest magnitude "
                    f"{np.abs(codes).max():.3g}): rescale it (e.g. divide by 1e6 or take a log)"
                )
        else:
            y = codes
    return Dataset(
        name=name,
        task=task,
        **_split_tensors(X, y, parts),
        input_shape=(X.shape[1],),
        output_size=len(classes) if classes else 1,
        preprocessor=pre,
        fingerprint=fingerprint,
        source=source,
        classes=classes,
        target=target,
        target_mean=y_mean,
        target_std=y_std,
        image_shape=image_shape,
        raw_example=json_rows(features[pre.columns].head(5)),
        raw_all=frame,
        split_index=parts,
    )


def _from_arrays(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    task: str | None,
    fingerprint: str,
    source: str,
    seed: int,
    val_size: float,
    test_size: float,
) -> Dataset:
    X, y = np.asarray(X), np.asarray(y)
    kind = check_layout(name, X.shape, X.dtype, y.shape, y.dtype, task)
    if kind == "table":  # features: treat as a table with columns x0..xn
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused by column in _from_frame
            frame = pd.DataFrame(X.astype(np.float32), columns=[f"x{i}" for i in range(X.shape[1])])
        frame["y"] = y.reshape(len(y))
        return _from_frame(name, frame, "y", task, fingerprint, source, seed, val_size, test_size, None)
    if kind == "labels":
        missing = pd.isna(y.reshape(len(y)))
        if missing.all():
            raise UsageError(f"{name}: y has no values (all missing): save one label or value per sample")
        if missing.any():
            log.warning("dropping %d samples whose y is missing", int(missing.sum()))
            X, y = X[~missing], y[~missing]
    X = finite_images(name, X)
    if X.ndim == 3:
        X = X[:, None]
    task = task or ("segmentation" if kind == "masks" else None)
    if task == "segmentation":
        y = y.reshape(len(y), 1, *y.shape[-2:]).astype(np.float32)
        if not np.isin(y, (0.0, 1.0)).all():
            raise UsageError(f"{name}: masks must be binary (0/1); found values {np.unique(y)[:5]}")
        classes, labels = None, None
    else:
        series = pd.Series(y.reshape(len(y)))
        task = task or infer_task(whole_numbers_as_int(series))
        if task == "regression" and series.dtype.kind not in "iuf":
            raise UsageError(
                f"{name}: task=regression needs numbers in y, but it holds {y.dtype} values: use task=classification"
            )
        if task == "regression":
            target_codes(series, task, "y")  # none infinite
        series = whole_numbers_as_int(series) if task == "classification" else series
        classes = sorted(series.unique().tolist()) if task == "classification" else None
        if classes is not None and len(classes) < 2:
            raise UsageError(f"{name}: y has a single class ({classes[0]!r}); classification needs at least two")
        y = (
            series.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
            if classes
            else series.to_numpy(np.float32)
        )
        labels = y if classes else None
    parts = seeded_split(np.arange(len(X)), labels, seed, val_size, test_size, "y", classes)
    train = X[parts["train"]]
    pre = Preprocessor(
        "image", pixel_mean=float(train.mean()), pixel_std=float(train.std()) or 1.0, image_shape=tuple(X.shape[1:])
    )
    Xs = pre.transform(X)
    y_mean, y_std = 0.0, 1.0
    if task == "regression":
        y_mean, y_std = float(y[parts["train"]].mean()), float(y[parts["train"]].std()) or 1.0
        y = ((y - y_mean) / y_std).astype(np.float32)
    return Dataset(
        name=name,
        task=task,
        **_split_tensors(Xs, y, parts),
        input_shape=tuple(X.shape[1:]),
        output_size=len(classes) if classes else 1,
        preprocessor=pre,
        fingerprint=fingerprint,
        source=source,
        classes=classes,
        target_mean=y_mean,
        target_std=y_std,
        image_shape=tuple(X.shape[1:]),
        raw_example=X[:2],
        raw_all=(X, np.asarray(y)),
        split_index=parts,
    )


def _split_tensors(X: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, object]:
    """The Dataset's X_/y_ tensors of each split (``parts``: the row indices of train, val and test)."""
    import torch

    return {f"{a}_{p}": torch.from_numpy(v[i]) for p, i in parts.items() for a, v in (("X", X), ("y", y))}
