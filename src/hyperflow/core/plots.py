"""Figures (matplotlib, headless): the learning curve of a training run."""

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


def search_progress(numbers: list[int], losses: list[float | None], statuses: list[str]) -> Figure:
    """Each trial's best val_loss (by status) and the running best: the search-progress curve."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"ok": "tab:blue", "pruned": "tab:orange", "failed": "tab:red"}
    for status, colour in colours.items():
        points = [(n, v) for n, v, s in zip(numbers, losses, statuses) if s == status and v is not None]
        if points:
            ax.scatter(*zip(*points), s=14, color=colour, label=status, alpha=0.8)
    best, running = float("inf"), []
    for v, s in zip(losses, statuses):
        if s == "ok" and v is not None:
            best = min(best, v)
        running.append(best if best < float("inf") else None)
    ax.step(numbers, running, where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel="best val_loss of the trial", title="search progress")
    finite = [v for v in losses if v is not None]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance(names: list[str], values: list[float], errors: list[float]) -> Figure:
    """Horizontal bars: permutation importance of each parameter for the trials' val_loss."""
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    order = sorted(range(len(names)), key=lambda i: values[i])
    ax.barh([names[i] for i in order], [values[i] for i in order], xerr=[errors[i] for i in order], color="tab:blue")
    ax.set(xlabel="permutation importance (drop in R² of a random forest on the trials)", title="parameter importance")
    fig.tight_layout()
    return fig
