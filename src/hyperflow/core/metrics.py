"""Per-task evaluation metrics computed in torch on whole splits (no per-batch Python work)."""

from __future__ import annotations

import torch

from hyperflow.core.losses import soft_dice


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-F1 (mean over classes present in labels or predictions)."""
    n_classes = logits.shape[1]
    pred = logits.argmax(1)
    confusion = torch.bincount(labels * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    tp = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    present = (support + predicted) > 0
    f1 = (2 * tp / (support + predicted).clamp(min=1))[present].mean()
    return {"accuracy": float(tp.sum() / len(labels)), "f1": float(f1)}


def regression_metrics(pred: torch.Tensor, target: torch.Tensor, target_std: float = 1.0) -> dict[str, float]:
    """RMSE and MAE in the target's original units (targets are trained standardised), and R²."""
    pred = pred.reshape(target.shape).double()
    target = target.double()
    err = pred - target
    ss_tot = ((target - target.mean()) ** 2).sum()
    r2 = 1 - (err ** 2).sum() / ss_tot if ss_tot > 0 else torch.tensor(float("nan"))
    return {"rmse": float(err.pow(2).mean().sqrt()) * target_std, "mae": float(err.abs().mean()) * target_std,
            "r2": float(r2)}


def segmentation_metrics(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Dice and IoU of thresholded masks (probability > 0.5), averaged over images."""
    pred = (logits > 0).flatten(1).double()
    masks = masks.flatten(1).double()
    inter = (pred * masks).sum(1)
    total = pred.sum(1) + masks.sum(1)
    empty = total == 0  # an empty mask predicted as empty is a perfect match
    dice = torch.where(empty, 1.0, 2 * inter / total.clamp(min=1))
    iou = torch.where(empty, 1.0, inter / (total - inter).clamp(min=1))
    return {"dice": float(dice.mean()), "iou": float(iou.mean())}


def task_metrics(task: str, output: torch.Tensor, target: torch.Tensor, target_std: float = 1.0) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(output, target)
    if task == "regression":
        return regression_metrics(output, target, target_std)
    return segmentation_metrics(output, target)


__all__ = ["task_metrics", "classification_metrics", "regression_metrics", "segmentation_metrics", "soft_dice"]
