"""The suite's results from its cached searches: the JSON (``{method: {task: {seed: {"curve", "regret"}}}}``), the
tables it prints (regret and mean rank at each share of the budget, per task, the real tables paired, the time
per trial outside the objective) and the plot of mean rank against budget."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import lcbench
import suite_scores as scores
from search import mean_se
from suite_objectives import REAL_TASKS, epochs_of

Data = dict[tuple[str, str, int], dict[str, Any]]  # (method, task, seed) -> the cached search


def references(data: Data) -> dict[tuple[str, int], tuple[float, float]]:
    """(best known, top of the range) per (task, seed): the surrogate's from 20,000 random configurations; a real
    table's from the runs at hand (the lowest value found for that seed's split, the median finished trial)."""
    refs: dict[tuple[str, int], tuple[float, float]] = {}
    pairs = {(t, s) for _, t, s in data}
    surrogate = lcbench.reference(sorted({t for t, _ in pairs if t not in REAL_TASKS}))
    for t, s in pairs:
        if t not in REAL_TASKS:
            refs[t, s] = (surrogate[t]["best"], surrogate[t]["median"])
            continue
        runs = [d["trials"] for (_, t2, s2), d in data.items() if (t2, s2) == (t, s)]
        values = [x["value"] for trials in runs for x in trials if x["status"] == "ok" and math.isfinite(x["value"])]
        refs[t, s] = (min(values), statistics.median(values)) if values else (0.0, 1.0)
    return refs


def results_json(data: Data, methods: list[str], n_trials: int, fractions=scores.FRACTIONS) -> dict[str, Any]:
    """``{method: {task: {seed: {"curve": [[units, best], ...], "regret": {"10": r, ...}}}}}``, keys strings."""
    refs, out = references(data), {m: {} for m in methods}
    for (m, t, s), d in sorted(data.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        points = scores.curve(d["trials"])
        regret = scores.regrets(points, n_trials * epochs_of(t), *refs[t, s], fractions)
        out[m].setdefault(t, {})[str(s)] = {"curve": points, "regret": regret}
    return out


def summary(results: dict[str, Any], tasks: list[str], fractions=scores.FRACTIONS) -> dict[str, dict[str, dict]]:
    """Per method: mean regret and mean rank over ``tasks`` at each share of the budget."""
    rows: dict[str, dict[str, dict]] = {m: {"regret": {}, "rank": {}} for m in results}
    for f in map(str, fractions):
        per = {
            m: {t: {s: r["regret"][f] for s, r in runs[t].items()} for t in tasks if t in runs}
            for m, runs in results.items()
        }
        for m, r in scores.mean_ranks(per).items():
            rows[m]["rank"][f], rows[m]["regret"][f] = r, scores.mean_over_tasks(per[m])
    return rows


def print_summary(results: dict[str, Any], data: Data, tasks: list[str], title: str) -> None:
    rows = summary(results, tasks)
    n_seeds = sorted({len(results[m][t]) for m in results for t in tasks if t in results[m]})
    print(f"\n### {title}: {len(tasks)} tasks × {'/'.join(map(str, n_seeds))} seeds\n")
    head = (
        " | ".join(f"regret {f} %" for f in scores.FRACTIONS)
        + " | "
        + " | ".join(f"rank {f} %" for f in scores.FRACTIONS)
    )
    print(f"| method | {head} | units | trials | stopped | s/search | s/trial outside the objective |")
    print("|---|" + "---:|" * (2 * len(scores.FRACTIONS) + 5))
    for m, row in rows.items():
        runs = [d for (m2, t, _), d in data.items() if m2 == m and t in tasks]
        units = [sum(x["units"] for x in d["trials"]) for d in runs]
        trials = [len(d["trials"]) for d in runs]
        stopped = [sum(x["status"] != "ok" for x in d["trials"]) for d in runs]
        seconds = [d["seconds"] for d in runs]
        outside = [(d["seconds"] - sum(x["seconds"] for x in d["trials"])) / len(d["trials"]) for d in runs]
        cells = [f"{row['regret'][str(f)]:.4f}" for f in scores.FRACTIONS] + [
            f"{row['rank'][str(f)]:.2f}" for f in scores.FRACTIONS
        ]
        stats = [statistics.mean(v) if v else math.nan for v in (units, trials, stopped, seconds)]
        extra = f"{stats[0]:.0f} | {stats[1]:.1f} | {stats[2]:.1f} | {stats[3]:.1f} | "
        extra += f"{statistics.median(outside) * 1000:.1f} ms" if outside else "-"
        print(f"| {m} | {' | '.join(cells)} | {extra} |")


def print_per_task(results: dict[str, Any], tasks: list[str]) -> None:
    methods = list(results)
    print("\nRegret at 100 % per task (mean ± s.e. over seeds):\n")
    print("| task | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for t in tasks:
        cells = [mean_se([r["regret"]["100"] for r in results[m].get(t, {}).values()]) for m in methods]
        print(f"| {t} | " + " | ".join(cells) + " |")


def print_paired(data: Data, tasks: list[str], first: str, second: str, n_trials: int) -> None:
    """The raw best value at the whole budget, ``first`` − ``second`` per seed (negative: ``first`` is better)."""
    print(f"\nBest value within the whole budget, {first} − {second}, paired over seeds:\n")
    print("| task | mean ± s.e. | per seed |")
    print("|---|---:|---|")
    for t in tasks:
        seeds = sorted(s for (m, t2, s) in data if (m, t2) == (first, t) and (second, t, s) in data)
        best = {
            (m, s): scores.best_at(scores.curve(data[m, t, s]["trials"]), n_trials * epochs_of(t))
            for m in (first, second)
            for s in seeds
        }
        diffs = [best[first, s] - best[second, s] for s in seeds]
        if diffs:
            print(f"| {t} | {mean_se(diffs, 4, '+')} | {' '.join(f'{d:+.4f}' for d in diffs)} |")


def plot_ranks(results: dict[str, Any], groups: dict[str, list[str]], fractions: tuple[int, ...], path: Path) -> None:
    """Mean rank against the share of the budget, one panel per group of tasks (``results`` holds regrets at
    every one of ``fractions``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {name: tasks for name, tasks in groups.items() if tasks}
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (name, tasks) in zip(axes[0], groups.items()):
        rows = summary(results, tasks, fractions)
        for m, row in rows.items():
            ax.plot(fractions, [row["rank"][str(f)] for f in fractions], label=m, marker=".")
        ax.set(xlabel="share of the budget (%)", ylabel="mean rank (1 = best)", title=name)
        ax.invert_yaxis()
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
