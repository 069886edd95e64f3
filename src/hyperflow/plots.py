"""Figures (matplotlib, headless): the learning curve of a training run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curve(history: list[dict[str, float]], title: str = "learning curve") -> Figure:
    """train/val loss per epoch (left) and the validation metrics and lr (right)."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        left.plot(epochs, [h[key] for h in history], label=key, marker="." if len(epochs) < 40 else None)
    left.set(xlabel="epoch", ylabel="loss", title=title)
    if all(h["train_loss"] > 0 and h["val_loss"] > 0 for h in history):
        left.set_yscale("log")
    left.legend()
    for key in sorted(k for k in history[0] if k.startswith("val_") and k != "val_loss"):
        right.plot(epochs, [h.get(key) for h in history], label=key)
    right.set(xlabel="epoch", title="validation metrics")
    right.legend(loc="lower left")
    lr_axis = right.twinx()
    lr_axis.plot(epochs, [h["lr"] for h in history], color="grey", linestyle=":", label="lr")
    lr_axis.set_ylabel("lr (at epoch start)")
    fig.tight_layout()
    return fig
