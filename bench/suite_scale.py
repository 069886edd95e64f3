"""``suite.py --scale``: what a search costs per trial outside the objective, early and late in a long search.

1,000 trials of a trivial objective (two parameters, returns at once, reports nothing), tracked in a sqlite store:
hyperflow through ``hyperflow.search`` with ``parallelism=1`` and ``parallelism=auto``, beside Optuna 5's default
``TPESampler`` with its RDB storage on sqlite, in the same process one after the other. A trial's cost outside the
objective is the wall time from the previous trial's end to its own end (trials in the order they ended; the first
from the search's start), less the time inside the objective; reported as the mean over trials 1-100 and
901-1,000, and their ratio. Where the time goes: a 300-trial search (``parallelism=1``) under cProfile, its own time
per function summed by the library the function lives in (the profiler's overhead inflates Python-heavy parts).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from suite_objectives import TrialLog

SPACE = {"x": {"type": "uniform", "low": -5.0, "high": 5.0}, "y": {"type": "loguniform", "low": 1e-3, "high": 1.0}}
N_TRIALS = 1000


class Trivial:
    """Returns at once; notes when it started and ended (monotonic clock: one across processes on Linux)."""

    def __init__(self, log: TrialLog) -> None:
        self.log = log

    def __call__(self, params: dict[str, Any], trial: Any = None) -> float:
        start = time.monotonic()
        value = (params["x"] - 1) ** 2 + math.log10(params["y"]) ** 2
        self.log.append({"start": start, "end": time.monotonic()})
        return value


def outside(log: TrialLog, started: float) -> list[float]:
    """Seconds per trial outside the objective, trials in the order they ended."""
    trials = sorted(log.read(), key=lambda t: t["end"])
    ends = [started] + [t["end"] for t in trials]
    return [end - before - (t["end"] - t["start"]) for t, before, end in zip(trials, ends, ends[1:])]


def run_hyperflow(parallelism: str | int, tmp: Path) -> list[float]:
    import hyperflow

    log = TrialLog(tmp / f"hyperflow-{parallelism}.jsonl")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow-{parallelism}.db"
    started = time.monotonic()
    hyperflow.search(Trivial(log), space=SPACE, max_evals=N_TRIALS, seed=0, parallelism=parallelism, register=False)
    return outside(log, started)


def run_optuna(tmp: Path) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log, objective = TrialLog(tmp / "optuna.jsonl"), None
    objective = Trivial(log)
    started = time.monotonic()
    study = optuna.create_study(storage=f"sqlite:///{tmp}/optuna.db", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(
        lambda t: objective({"x": t.suggest_float("x", -5, 5), "y": t.suggest_float("y", 1e-3, 1, log=True)}),
        n_trials=N_TRIALS,
    )
    return outside(log, started)


LIBRARIES = ("sqlalchemy", "sqlite3", "alembic", "mlflow", "hyperopt", "hyperflow", "numpy", "scipy", "pandas")


def where_the_time_goes(tmp: Path, n: int = 300) -> dict[str, float]:
    """Seconds per trial by library (the function's file; C methods by their type's module, e.g. sqlite3)."""
    import cProfile
    import pstats

    import hyperflow

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow-profiled.db"
    profile = cProfile.Profile()
    profile.enable()
    objective = Trivial(TrialLog(tmp / "profiled.jsonl"))
    hyperflow.search(objective, space=SPACE, max_evals=n, seed=0, parallelism=1, register=False)
    profile.disable()
    spent: dict[str, float] = {}
    for (path, _, name), (*_, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        where = f"{path} {name}"
        library = next((lib for lib in LIBRARIES if f"/{lib}/" in where or f"'{lib}." in where), "other")
        spent[library] = spent.get(library, 0.0) + own / n
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def main() -> None:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("hyperflow, parallelism=1", lambda: run_hyperflow(1, Path(tmp))),
            ("hyperflow, parallelism=auto", lambda: run_hyperflow("auto", Path(tmp))),
            ("Optuna 5 TPE + RDB sqlite", lambda: run_optuna(Path(tmp))),
        ):
            started = time.perf_counter()
            costs = run()
            rows[name] = (costs, time.perf_counter() - started)
            print(f"  done {name}: {rows[name][1]:.1f} s", flush=True)
        spent = where_the_time_goes(Path(tmp))
    print(f"\n{N_TRIALS} trials of a trivial objective, time per trial outside the objective (ms):\n")
    print("| search | trials 1-100 | 901-1,000 | ratio | median 1-100 | median 901-1,000 | total (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (costs, total) in rows.items():
        early, late = costs[:100], costs[900:1000]
        ratio = statistics.mean(late) / statistics.mean(early) if early and late else math.nan
        print(
            f"| {name} | {1000 * statistics.mean(early):.1f} | {1000 * statistics.mean(late):.1f} | {ratio:.2f} | "
            f"{1000 * statistics.median(early):.1f} | {1000 * statistics.median(late):.1f} | {total:.1f} |"
        )
    print("\nWhere a trial's time goes (hyperflow, parallelism=1, 300 trials under cProfile), ms per trial:\n")
    print("| " + " | ".join(spent) + " |\n|" + "---:|" * len(spent))
    print("| " + " | ".join(f"{1000 * v:.1f}" for v in spent.values()) + " |")
