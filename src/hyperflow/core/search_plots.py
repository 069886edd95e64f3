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
from matplotlib.collections import LineCollection
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
    trial ends in a cross where it was stopped, the ``best`` trial is drawn bold. One collection of lines per status:
    a thousand trials draw in well under a second."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    curves = _curves(table)
    handles = []
    for status, colour in COLOURS.items():
        lines = [xy for (number, s), xy in curves.items() if s == status and number != best]
        ends = [xy[-1] for (_, s), xy in curves.items() if s == status and status == "pruned"]
        if lines:
            ax.add_collection(
                LineCollection(lines, colors=colour, linestyles=STYLES[status], linewidths=0.9, alpha=0.55)
            )
        if ends:
            ax.scatter(*np.array(ends).T, marker="x", s=28, color=colour, zorder=3)
        if lines or ends:
            label = "pruned (× where stopped)" if status == "pruned" else status
            marker = "x" if status == "pruned" else None
            handles.append(Line2D([], [], color=colour, linestyle=STYLES[status], marker=marker, label=label))
    for (number, _), xy in curves.items():
        if number == best:
            ax.plot(*xy.T, color="black", linewidth=2.2, zorder=4)
            handles.append(Line2D([], [], color="black", linewidth=2.2, label=f"best: trial {best}"))
    ax.autoscale()
    if curves and min(xy[:, 1].min() for xy in curves.values()) > 0:
        ax.set_yscale("log")
    trials = table["trial"].nunique()
    ax.set(xlabel=step, ylabel=value, title=f"learning curves of {trials} trials")
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return fig


def _curves(table: pd.DataFrame) -> dict[tuple[int, str], np.ndarray]:
    """(trial, status) -> the trial's finite (step, value) points (a trial's rows are consecutive in ``table``);
    a trial with none is left out."""
    if table.empty:
        return {}
    trials, statuses = table["trial"].to_numpy(), table["status"].to_numpy()
    points = table[["step", "value"]].to_numpy(dtype=float)
    starts = np.flatnonzero(np.r_[True, trials[1:] != trials[:-1]])
    curves = {}
    for first, rows in zip(starts, np.split(points, starts[1:])):
        finite = rows[np.isfinite(rows[:, 1])]
        if len(finite):
            curves[(int(trials[first]), str(statuses[first]))] = finite
    return curves


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
