"""Figures (matplotlib, headless) of a training run: its learning curve and the LR range test. A search's are
:mod:`hyperflow.core.search_plots`."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


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


def lr_finder_curve(
    lrs: Any,
    losses: Any,
    smoothed: Any,
    suggested_lr: float,
    lr_range: tuple[float, float],
    status: str,
    band: tuple[Any, Any] | None = None,
    rule: str = "valley",
) -> Figure:
    """Loss vs lr (log x): raw points, the smoothed curve, the band over repeats, the suggestion and range."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(lrs, losses, s=8, alpha=0.35, color="tab:blue", label="raw loss")
    ax.plot(lrs, smoothed, color="tab:blue", linewidth=2, label="smoothed")
    if band is not None:
        ax.fill_between(lrs, band[0], band[1], color="tab:blue", alpha=0.15, label="band over repeats")
    ax.axvspan(
        lr_range[0], lr_range[1], color="tab:green", alpha=0.12, label=f"range {lr_range[0]:.2g} – {lr_range[1]:.2g}"
    )
    ax.axvline(suggested_lr, color="tab:red", linestyle="--", label=f"{rule}: {suggested_lr:.2g}")
    ax.set_xscale("log")
    low, high = float(min(smoothed)), float(max(smoothed[: max(3, len(smoothed) // 10)]))
    pad = (high - low) * 0.3 or abs(low) * 0.1 or 1.0
    ax.set_ylim(low - pad, max(high, low) + pad * 3)
    ax.set(xlabel="learning rate", ylabel="loss", title=f"LR range test · status: {status}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
