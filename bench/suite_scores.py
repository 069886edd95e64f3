"""The suite's maths: a search's anytime curve, normalised regret at a share of the budget, mean ranks.

**Best value found** (the incumbent, as HPOBench, YAHPO Gym and BOHB's papers count it): the lowest value among the
trials that ran to full fidelity (every epoch: finished, neither pruned nor stopped by the budget), which is also
the value hyperflow's and Optuna's searches return as their best. A pruned trial's values never count: they are
at a lower fidelity. A search's **curve** is ``[[units, best], ...]``: a point at the units of work used (epochs,
pruned trials' included) when a finished trial improved the best, and a last point at the units used in all.
At a share ``f`` of the budget, the best is the last point with ``units <= f * budget``; none yet counts as the
top of the task's range (regret 1).

**Normalised regret**: ``(best - best_known) / (top - best_known)``, at most 1, and below 0 when a search beats
the best known. **Ranks**: per (task, seed) the methods are ranked by regret (1 = lowest, ties share the mean
rank), averaged over seeds, then over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

FRACTIONS = (10, 25, 50, 100)  # percent of the budget


def curve(trials: Iterable[dict[str, Any]]) -> list[list[float]]:
    """The anytime curve of trials in the order they ended; a trial is ``{"units", "status", "value"}``."""
    points, units, best = [], 0, math.inf
    for trial in trials:
        units += trial["units"]
        if trial["status"] == "ok" and trial["value"] < best:
            best = trial["value"]
            points.append([units, best])
    if points and points[-1][0] != units:
        points.append([units, best])
    return points


def best_at(points: Sequence[Sequence[float]], units: float) -> float:
    """The best value found within ``units`` of work; inf when no trial had finished by then."""
    best = math.inf
    for used, value in points:
        if used > units:
            break
        best = value
    return best


def regret(best: float, best_known: float, top: float) -> float:
    """``best`` normalised to the task's range: 0 at the best known, 1 at the top (and above it, or nothing)."""
    if not math.isfinite(best):
        return 1.0
    return min(1.0, (best - best_known) / (top - best_known))


def regrets(
    points: Sequence[Sequence[float]],
    budget: float,
    best_known: float,
    top: float,
    fractions: Iterable[int] = FRACTIONS,
) -> dict[str, float]:
    """Regret at each share of the budget: ``{"10": r, "25": r, "50": r, "100": r}``."""
    return {str(f): regret(best_at(points, budget * f / 100), best_known, top) for f in fractions}


def rank(values: Sequence[float]) -> list[float]:
    """Ranks from 1 (lowest value); tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mean_ranks(table: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean rank of each method over the (task, seed) pairs every method ran, ``table`` being
    ``{method: {task: {seed: regret}}}``: ranked per pair, averaged over a task's seeds, then over tasks."""
    methods = list(table)
    tasks = set.intersection(*(set(table[m]) for m in methods)) if methods else set()
    per_task: dict[str, list[float]] = {m: [] for m in methods}
    for task in sorted(tasks):
        seeds = set.intersection(*(set(table[m][task]) for m in methods))
        if not seeds:
            continue
        sums = dict.fromkeys(methods, 0.0)
        for seed in seeds:
            for m, r in zip(methods, rank([table[m][task][seed] for m in methods])):
                sums[m] += r
        for m in methods:
            per_task[m].append(sums[m] / len(seeds))
    return {m: sum(v) / len(v) if v else math.nan for m, v in per_task.items()}


def mean_over_tasks(runs: dict[str, dict[str, float]]) -> float:
    """A method's ``{task: {seed: regret}}`` averaged over each task's seeds, then over tasks."""
    per_task = [sum(seeds.values()) / len(seeds) for seeds in runs.values() if seeds]
    return sum(per_task) / len(per_task) if per_task else math.nan
