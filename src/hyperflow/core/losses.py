"""Loss functions keyed by name, the default per task, and which losses fit which task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyperflow.errors import UsageError

DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse", "segmentation": "bce_dice"}
LOSSES_FOR_TASK = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "l1", "huber"),
    "segmentation": ("dice", "bce_dice"),
}


def soft_dice(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean soft Dice coefficient of sigmoid(logits) against binary masks, per image (Milletari et al.)."""
    probs = torch.sigmoid(logits).flatten(1)
    masks = masks.flatten(1)
    inter = (probs * masks).sum(1)
    return ((2 * inter + eps) / (probs.sum(1) + masks.sum(1) + eps)).mean()


class DiceLoss(nn.Module):
    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return 1 - soft_dice(logits, masks)


class BCEDiceLoss(nn.Module):
    """Binary cross-entropy plus Dice: BCE gives smooth per-pixel gradients, Dice counters class imbalance."""

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, masks) + 1 - soft_dice(logits, masks)


class _Squeezed(nn.Module):
    """Regression losses on (N, 1) outputs against (N,) targets."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(pred.reshape(target.shape), target)


def build_loss(name: str | None, task: str, label_smoothing: float = 0.0) -> nn.Module:
    """The named loss (default: the task's), refused when it does not fit the task."""
    name = name or DEFAULT_LOSS[task]
    if name not in LOSSES_FOR_TASK[task]:
        raise UsageError(
            f"loss={name} does not fit a {task} task: use "
            f"{' or '.join(LOSSES_FOR_TASK[task])} (default {DEFAULT_LOSS[task]})"
        )
    if label_smoothing and name != "cross_entropy":
        raise UsageError("label_smoothing applies to loss=cross_entropy only: set label_smoothing=0")
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "mse":
        return _Squeezed(nn.MSELoss())
    if name == "l1":
        return _Squeezed(nn.L1Loss())
    if name == "huber":
        return _Squeezed(nn.HuberLoss())
    if name == "dice":
        return DiceLoss()
    return BCEDiceLoss()
