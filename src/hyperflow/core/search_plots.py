"""Figures of a search (matplotlib, headless), each drawn from a table the caller may log beside it: progress by
trial, the learning curves of all trials (pruned ones marked, as Optuna's intermediate-values plot shows them),
the best so far against units of work, and parameter importance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

COLOURS = {"ok": "tab:blue", "pruned": "tab:orange", "failed": "tab:red"}
STYLES = {"ok": "-", "pruned": "-", "failed": ":"}


def search_progress(numbers: list[int], losses: list[float | None], statuses: list[str]) -> Figure:
    """Each trial's best val_loss (by status) and the running best: the search-progress curve."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, colour in COLOURS.items():
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


def curves_table(numbers: Sequence[int], statuses: Sequence[str], histories: Sequence[Sequence[float]]) -> pd.DataFrame:
    """The values each trial reported, one row per step: ``trial``, ``status`` (ok, pruned, failed), ``step`` (1, 2,
    ...), ``value`` (a non-finite one as reported)."""
    rows = [
        (number, status, step, float(value))
        for number, status, history in zip(numbers, statuses, histories)
        for step, value in enumerate(history, 1)
    ]
    return pd.DataFrame(rows, columns=["trial", "status", "step", "value"])


def learning_curves(table: pd.DataFrame, best: int | None, value: str = "val_loss", step: str = "epoch") -> Figure:
    """One line per trial of :func:`curves_table`'s ``table`` (``value`` per ``step``), coloured by status; a pruned
    trial ends in a cross where it was stopped, the ``best`` trial is drawn bold."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    finite = table[np.isfinite(table["value"].to_numpy(dtype=float))]
    for (number, status), curve in finite.groupby(["trial", "status"], sort=False):
        colour, bold = COLOURS.get(status, "grey"), number == best
        ax.plot(
            curve["step"],
            curve["value"],
            color="black" if bold else colour,
            linestyle=STYLES.get(status, "-"),
            linewidth=2.2 if bold else 0.9,
            alpha=1.0 if bold else 0.55,
            zorder=3 if bold else 2,
        )
        if status == "pruned":
            ax.scatter(curve["step"].iloc[-1:], curve["value"].iloc[-1:], marker="x", s=28, color=colour, zorder=3)
    counts = table.drop_duplicates("trial")["status"].value_counts()
    handles = [
        Line2D([], [], color=COLOURS[s], linestyle=STYLES[s], marker="x" if s == "pruned" else None, label=label)
        for s, label in (("ok", "ok"), ("pruned", "pruned (× where stopped)"), ("failed", "failed"))
        if counts.get(s, 0)
    ]
    if best is not None:
        handles.append(Line2D([], [], color="black", linewidth=2.2, label=f"best: trial {best}"))
    if len(finite) and finite["value"].min() > 0:
        ax.set_yscale("log")
    trials = table["trial"].nunique()
    ax.set(xlabel=step, ylabel=value, title=f"learning curves of {trials} trials")
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return fig


def best_so_far_table(
    numbers: Sequence[int], statuses: Sequence[str], losses: Sequence[float | None], units: Sequence[int]
) -> pd.DataFrame:
    """The search against its units of work, trial by trial (in trial order): ``trial``, ``status``, ``loss``,
    ``units`` (used by this trial and those before it) and ``best`` (the best loss of a finished trial so far)."""
    best, rows, used = math.inf, [], 0
    for number, status, loss, spent in zip(numbers, statuses, losses, units):
        used += spent
        if status == "ok" and loss is not None:
            best = min(best, loss)
        rows.append((number, status, loss, used, best if best < math.inf else None))
    return pd.DataFrame(rows, columns=["trial", "status", "loss", "units", "best"])


def best_so_far(table: pd.DataFrame, budget: int = 0, unit: str = "epochs", value: str = "val_loss") -> Figure:
    """The best so far of :func:`best_so_far_table`'s ``table`` against the units of work used (a step each
    trial), each trial's loss at the units used once it ended, and the ``budget`` (0: none)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, colour in COLOURS.items():
        rows = table[(table["status"] == status) & table["loss"].notna()]
        if len(rows):
            ax.scatter(rows["units"], rows["loss"], s=14, color=colour, alpha=0.8, label=status)
    ax.step([0, *table["units"]], [None, *table["best"]], where="post", color="black", label="best so far")
    if budget:
        ax.axvline(budget, color="grey", linestyle="--", label=f"budget: {budget} {unit}")
    losses = table["loss"].dropna()
    if len(losses) and losses.min() > 0:
        ax.set_yscale("log")
    ax.set(xlabel=f"units of work used ({unit})", ylabel=value, title="best so far against units of work")
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
