"""Per-task evaluation metrics: the one implementation, in numpy, on whole splits.

The trainer calls :func:`task_metrics` on its outputs (``val_accuracy``, ``test_rmse``, … per epoch); scoring
a registered model (``hyperflow.workflows.scoring``) calls the same functions on what the served model
returns for raw rows. Sums run in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hyperflow import names


def classification_metrics(predicted: Any, truth: Any) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over the classes present in the labels or the predictions). Labels of
    any kind: class codes, or the class names a served model returns."""
    predicted, truth = np.asarray(predicted).reshape(-1), np.asarray(truth).reshape(-1)
    codes = truth.dtype.kind in "iu" and predicted.dtype.kind in "iu"
    if codes and len(truth) and min(truth.min(), predicted.min()) >= 0:
        t, p = truth, predicted  # class codes (the trainer): no sort needed
        k = int(max(truth.max(), predicted.max())) + 1
    else:
        labels, codes = np.unique(np.concatenate([truth, predicted]), return_inverse=True)
        t, p, k = codes[: len(truth)], codes[len(truth) :], len(labels)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    both = (confusion.sum(1) + confusion.sum(0)).astype(np.float64)
    present = both > 0  # classes in the labels or the predictions
    f1 = float((2 * tp[present] / both[present]).mean()) if present.any() else math.nan
    return {names.ACCURACY: float(tp.sum() / len(truth)) if len(truth) else math.nan, names.F1: f1}


def log_loss(p_true: Any) -> float:
    """Mean negative log of the probability given to the true class (clipped at 1e-15)."""
    return float(-np.log(np.clip(np.asarray(p_true, dtype=np.float64), 1e-15, 1)).mean())


def regression_metrics(pred: Any, target: Any, scale: float = 1.0) -> dict[str, float]:
    """RMSE and MAE (times ``scale``: the trainer's targets are standardised, so it passes their std to
    report the target's units) and R² (NaN for a constant target)."""
    target = np.asarray(target, dtype=np.float64)
    err = np.asarray(pred, dtype=np.float64).reshape(target.shape) - target
    ss_tot = float(((target - target.mean()) ** 2).sum())
    r2 = 1 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan
    return {
        names.RMSE: float(np.sqrt((err**2).mean())) * scale,
        names.MAE: float(np.abs(err).mean()) * scale,
        names.R2: r2,
    }


def segmentation_metrics(predicted: Any, masks: Any) -> dict[str, float]:
    """Dice and IoU per image of predicted (boolean) masks against true masks, averaged over images; an
    empty mask predicted as empty is a perfect match."""
    n = len(masks)
    pred = np.asarray(predicted).reshape(n, -1).astype(np.float64)
    masks = np.asarray(masks).reshape(n, -1).astype(np.float64)
    inter = (pred * masks).sum(1)
    total = pred.sum(1) + masks.sum(1)
    empty = total == 0
    dice = np.where(empty, 1.0, 2 * inter / np.maximum(total, 1))
    iou = np.where(empty, 1.0, inter / np.maximum(total - inter, 1))
    return {names.DICE: float(dice.mean()), names.IOU: float(iou.mean())}


def task_metrics(task: str, output: Any, target: Any, target_std: float = 1.0) -> dict[str, float]:
    """The metrics of raw model outputs (arrays: logits, standardised values, or mask logits) on a split."""
    output = np.asarray(output)
    if task == "classification":
        return classification_metrics(output.argmax(1), target)
    if task == "regression":
        return regression_metrics(output, target, target_std)
    return segmentation_metrics(output > 0, target)


__all__ = ["classification_metrics", "log_loss", "regression_metrics", "segmentation_metrics", "task_metrics"]
