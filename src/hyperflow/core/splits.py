"""Train, val and test rows: a seeded split (stratified for classes), or the one a ``split_column`` marks;
one-line reasons when the rows cannot be split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hyperflow.core.table_files import bounded
from hyperflow.errors import UsageError

_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def marked_split(column: pd.Series, split_column: str, test_size: float) -> dict[str, np.ndarray]:
    """The rows ``split_column`` marks train, val or test (any case, also training, valid, validation)."""
    index = np.arange(len(column))
    words = column.astype(str).str.strip().str.lower().map(_SPLIT_WORDS)
    if words.isna().any():
        bad = column[words.isna()].astype(str).unique()[:3]
        raise UsageError(f"split_column '{split_column}' has values {', '.join(bad)}: use train, val or test")
    parts = {p: index[(words == p).to_numpy()] for p in ("train", "val", "test")}
    if not len(parts["train"]) or not len(parts["val"]):
        raise UsageError(f"split_column '{split_column}' needs rows marked train and val")
    if not len(parts["test"]) and test_size:
        raise UsageError(
            f"split_column '{split_column}' marks no rows test: mark some (they score the final "
            f"model, and promote scores them), or pass test_size=0 to train without a test set"
        )
    return parts


def seeded_split(
    index: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    val_size: float,
    test_size: float,
    target: str | None,
    classes: list | None = None,
) -> dict[str, np.ndarray]:
    """Seeded train/val/test split, stratified when labels (codes of ``classes``) are given."""
    from sklearn.model_selection import train_test_split

    try:
        parts: dict[str, np.ndarray] = {"test": index[:0]}
        rest = index
        if test_size > 0:
            rest, parts["test"] = train_test_split(
                index, test_size=test_size, random_state=seed, stratify=None if labels is None else labels
            )
        val_share = val_size / (1 - test_size)
        parts["train"], parts["val"] = train_test_split(
            rest, test_size=val_share, random_state=seed + 1, stratify=None if labels is None else labels[rest]
        )
    except ValueError:
        raise UsageError(_split_error(len(index), labels, target, classes)) from None
    return parts


def _split_error(rows: int, labels: np.ndarray | None, target: str | None, classes: list | None) -> str:
    """Why ``rows`` rows cannot be split: too few of them, or classes with too few rows (named)."""
    if labels is None:
        return f"cannot split {rows} row(s) into train, val and test sets: add rows or set split_column"
    counts = pd.Series(labels).value_counts().sort_values(kind="stable")
    names = classes or range(int(labels.max()) + 1)
    rare = [f"{names[c]!r}" if isinstance(names[c], str) else str(names[c]) for c, n in counts.items() if n < 3]
    why = (
        f"{len(rare)} of its {len(counts)} classes {'has' if len(rare) == 1 else 'have'} fewer than 3 rows "
        f"({bounded(rare)})"
        if rare
        else f"{len(counts)} classes need more rows in each split"
    )
    fix = (
        "its values look continuous or unique: use task=regression for a number, or another target"
        if len(counts) > rows / 3
        else "add rows, merge rare classes or set split_column"
    )
    return f"cannot split {rows} rows stratified by target '{target}': {why}; {fix}"
