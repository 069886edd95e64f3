"""Scoring a registered model the way it serves: raw rows in (the test split of its training data, or a
file), metrics out. The candidate and the champion see the same rows; the formulas are
:mod:`hyperflow.core.metrics`, the ones the trainer reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hyperflow import names
from hyperflow.config import TrainConfig
from hyperflow.core import metrics
from hyperflow.core.assembly import load_data
from hyperflow.core.loading import load_dataset
from hyperflow.errors import UsageError, one_line
from hyperflow.workflows.gate import quoted_list


@dataclass
class EvalRows:
    """Raw feature rows (a frame, or image arrays) and their true targets, as the model will see them."""

    features: Any
    target: np.ndarray
    task: str
    source: str  # what the rows are, for the record


def evaluation_rows(config: TrainConfig | None, data: str | None = None, target: str | None = None) -> EvalRows:
    """``data`` given: all its rows. Otherwise the test split of the run's data, reproduced from its settings."""
    if data:
        target = target or (config.target if config else None)
        dataset = load_dataset(data, target, config.task if config else None, seed=config.seed if config else 42)
        index = np.arange(len(dataset.raw_all[1] if isinstance(dataset.raw_all, tuple) else dataset.raw_all))
        source = f"{data} (all {len(index)} rows)"
    elif config is None:
        raise UsageError("no evaluation data: pass data=<file> (and target=<column>)")
    else:
        dataset = load_data(config)
        index = dataset.split_index["test"]
        if not len(index):
            raise UsageError(f"the training data {config.data} has no test split (test_size=0): pass data=<file>")
        source = f"{config.data} test split (seed {config.seed}, {len(index)} rows)"
    raw = dataset.raw_all
    if isinstance(raw, tuple):  # arrays: X raw, y as trained (codes, or standardised values)
        X, y = raw[0][index], raw[1][index]
        if dataset.task == "classification":
            y = np.asarray(dataset.classes, dtype=object)[y]
        elif dataset.task == "regression":
            y = y * dataset.target_std + dataset.target_mean
        return EvalRows(X, np.asarray(y), dataset.task, source)
    rows = raw.iloc[index].reset_index(drop=True)  # columns the model does not know are ignored by it
    return EvalRows(rows.drop(columns=[dataset.target]), rows[dataset.target].to_numpy(), dataset.task, source)


def score(model: Any, rows: EvalRows) -> dict[str, float]:
    """Metrics of a pyfunc model on raw rows: accuracy, f1, log_loss (classes); rmse, mae, r2; dice."""
    try:
        out = model.predict(rows.features)
    except Exception as exc:  # rows it cannot take (data= lacking a column the model needs): bad input
        raise UsageError(f"the model cannot score the rows of {rows.source}: {one_line(exc, 300)}") from None
    y = rows.target
    if rows.task == "classification":
        truth, pred = y.astype(str), out["prediction"].to_numpy().astype(str)
        prefix = names.PROBABILITY_PREFIX
        cols = [c for c in out.columns if c.startswith(prefix)]
        position = {c[len(prefix) :]: i for i, c in enumerate(cols)}
        unknown = set(truth) - set(position)
        if unknown:  # accuracy on labels the model cannot say would compare nothing
            raise UsageError(
                f"the rows of {rows.source} have labels the model never learned "
                f"({quoted_list(unknown)}; its classes: {', '.join(sorted(position))}): score it on "
                f"data labelled as it was trained"
            )
        probs = out[cols].to_numpy(dtype=float)
        p_true = np.array([probs[i, position[t]] for i, t in enumerate(truth)])
        return {**metrics.classification_metrics(pred, truth), names.LOG_LOSS: metrics.log_loss(p_true)}
    if rows.task == "regression":
        return metrics.regression_metrics(out["prediction"].to_numpy(float), y.astype(float))
    pred = np.asarray(out) > 0.5
    masks = y > 0.5
    return {names.DICE: metrics.segmentation_metrics(pred.reshape(len(y), -1), masks.reshape(len(y), -1))[names.DICE]}
