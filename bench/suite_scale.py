"""``suite.py --scale``: what a search costs per trial outside the objective, early and late in a long search.

1,000 trials of a trivial objective (two parameters, returns at once, reports nothing), tracked in a sqlite store:
hyperflow through ``hyperflow.search`` with ``parallelism=1`` and ``parallelism=auto``, beside Optuna 5's default
``TPESampler`` with its RDB storage on sqlite, in the same process one after the other. A trial's cost outside the
objective is the wall time from the previous trial's end to its own end (trials in the order they ended; the first
from the search's start), less the time inside the objective; reported as the mean over trials 1-100 and
901-1,000, and their ratio; three rounds by default, the searches in a rotating order (each first, second and
last once), every round printed, and the medians. Where the time goes: a 300-trial search (``parallelism=1``)
under cProfile, its own time per function summed by the library the function lives in (the profiler's overhead
inflates Python-heavy parts), and its store traffic per trial: the MLflow calls it made (``MlflowClient`` and fluent
functions, by name) and the database sessions, statements and commits (SQLAlchemy's engine events).

Also a script of its own, for ``bench/before_after.py``: ``--json PATH`` writes each search's numbers, ``--trials N``
runs N trials a search (the windows stay the first and the last 100), ``--rounds R`` R rounds, ``--no-profile``
skips where the time goes.

    python bench/suite.py --scale
    python bench/suite_scale.py --no-profile --json out.json
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from suite_objectives import TrialLog

SPACE = {"x": {"type": "uniform", "low": -5.0, "high": 5.0}, "y": {"type": "loguniform", "low": 1e-3, "high": 1.0}}
N_TRIALS = 1000
ROUNDS = 3  # one round's order moved with the machine's speed: the verdict is the median's


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


def run_hyperflow(parallelism: str | int, tmp: Path, n: int = N_TRIALS) -> list[float]:
    import hyperflow

    log = TrialLog(tmp / f"hyperflow-{parallelism}.jsonl")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow-{parallelism}.db"
    started = time.monotonic()
    hyperflow.search(Trivial(log), space=SPACE, max_evals=n, seed=0, parallelism=parallelism, register=False)
    return outside(log, started)


def run_optuna(tmp: Path, n: int = N_TRIALS) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log, objective = TrialLog(tmp / "optuna.jsonl"), None
    objective = Trivial(log)
    started = time.monotonic()
    study = optuna.create_study(storage=f"sqlite:///{tmp}/optuna.db", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(
        lambda t: objective({"x": t.suggest_float("x", -5, 5), "y": t.suggest_float("y", 1e-3, 1, log=True)}),
        n_trials=n,
    )
    return outside(log, started)


LIBRARIES = ("sqlalchemy", "sqlite3", "alembic", "mlflow", "hyperopt", "hyperflow", "numpy", "scipy", "pandas")


MLFLOW_API = ("mlflow/tracking/client.py", "mlflow/tracking/fluent.py")  # MlflowClient's methods, mlflow.<fn>


def where_the_time_goes(tmp: Path, n: int = 300) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per trial by library (the function's file; C methods by their type's module, e.g. sqlite3), and
    the store traffic per trial: MLflow's public calls by name, the database's sessions, statements, commits."""
    import cProfile
    import pstats

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import hyperflow

    traffic: collections.Counter[str] = collections.Counter()

    def on_statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        traffic[f"SQL {statement.split()[0].upper()}"] += 1

    def on_commit(conn: Any) -> None:
        traffic["database commits (one a session)"] += 1

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow-profiled.db"
    objective = Trivial(TrialLog(tmp / "profiled.jsonl"))
    event.listen(Engine, "before_cursor_execute", on_statement)
    event.listen(Engine, "commit", on_commit)
    profile = cProfile.Profile()
    profile.enable()
    try:
        hyperflow.search(objective, space=SPACE, max_evals=n, seed=0, parallelism=1, register=False)
    finally:
        profile.disable()
        event.remove(Engine, "before_cursor_execute", on_statement)
        event.remove(Engine, "commit", on_commit)
    spent: dict[str, float] = {}
    for (path, _, name), (_, calls, own, cumulative, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        where = f"{path} {name}"
        library = next((lib for lib in LIBRARIES if f"/{lib}/" in where or f"'{lib}." in where), "other")
        spent[library] = spent.get(library, 0.0) + own / n
        if path.endswith(MLFLOW_API) and name.isidentifier() and not name.startswith("_") and calls >= n / 2:
            api = "mlflow." if path.endswith("fluent.py") else "MlflowClient."
            traffic[f"{api}{name} (ms)"] += 1000 * cumulative
            traffic[f"{api}{name}"] += calls
    per_trial = {k: v / n for k, v in sorted(traffic.items())}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1])), per_trial


def summary(costs: list[float], total: float) -> dict[str, float]:
    """Mean and median ms per trial of the first and the last 100 trials, their ratio (means), the total s."""
    early, late = costs[:100], costs[-100:]
    return {
        "early_ms": 1000 * statistics.mean(early),
        "late_ms": 1000 * statistics.mean(late),
        "ratio": statistics.mean(late) / statistics.mean(early),
        "early_median_ms": 1000 * statistics.median(early),
        "late_median_ms": 1000 * statistics.median(late),
        "total_s": total,
    }


OPTUNA = "Optuna 5 TPE + RDB sqlite"
SEARCHES = {  # name: its key in --json, and how it runs (a folder of its own, the trials)
    "hyperflow, parallelism=1": ("p1", functools.partial(run_hyperflow, 1)),
    "hyperflow, parallelism=auto": ("auto", functools.partial(run_hyperflow, "auto")),
    OPTUNA: ("optuna", run_optuna),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=N_TRIALS, help=f"trials a search (default {N_TRIALS})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of the three searches (default {ROUNDS})")
    parser.add_argument("--no-profile", action="store_true", help="skip where the time goes (the profiled search)")
    parser.add_argument("--json", type=Path, help="write each search's numbers (medians over the rounds) here")
    args = parser.parse_args([] if argv is None else argv)
    n = args.trials
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in SEARCHES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            folder = Path(tmp) / f"round-{round_}"
            folder.mkdir()
            names, shift = list(SEARCHES), round_ % len(SEARCHES)
            for name in names[shift:] + names[:shift]:  # each search first, second, third in turn
                started = time.perf_counter()
                costs = SEARCHES[name][1](folder, n)
                rounds[name].append(summary(costs, time.perf_counter() - started))
                print(f"  round {round_ + 1}: done {name}: {rounds[name][-1]['total_s']:.1f} s", flush=True)
        spent, traffic = ({}, {}) if args.no_profile else where_the_time_goes(Path(tmp), min(300, n))
    print(f"\n{n} trials of a trivial objective, time per trial outside the objective (ms), every round:\n")
    print("| round | search | trials 1-100 | last 100 | ratio | median 1-100 | median last 100 | total (s) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for round_ in range(args.rounds):
        for name, rows in rounds.items():
            r = rows[round_]
            print(
                f"| {round_ + 1} | {name} | {r['early_ms']:.1f} | {r['late_ms']:.1f} | {r['ratio']:.2f} | "
                f"{r['early_median_ms']:.1f} | {r['late_median_ms']:.1f} | {r['total_s']:.1f} |"
            )
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in rounds.items()}
    print(f"\nMedians over {args.rounds} rounds (last 100: min-max over the rounds):\n")
    print("| search | trials 1-100 | last 100 | last 100, min-max | ratio | total (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in medians.items():
        late = [r["late_ms"] for r in rounds[name]]
        print(
            f"| {name} | {m['early_ms']:.1f} | {m['late_ms']:.1f} | {min(late):.1f}-{max(late):.1f} | "
            f"{m['ratio']:.2f} | {m['total_s']:.1f} |"
        )
    optuna = rounds[OPTUNA]
    for name in [name for name in SEARCHES if name != OPTUNA]:
        against = [r["late_ms"] / o["late_ms"] for r, o in zip(rounds[name], optuna)]
        print(
            f"\n{name} / Optuna, last 100 trials, every round: {', '.join(f'{x:.2f}' for x in against)} "
            f"(median {statistics.median(against):.2f}; below 1 in {sum(x < 1 for x in against)} of {len(against)})"
        )
    if args.json:
        import hyperflow

        numbers = {f"{SEARCHES[name][0]}_{k}": v for name, m in medians.items() for k, v in m.items()}
        args.json.write_text(json.dumps({"hyperflow": hyperflow.__file__, "trials": n, **numbers}))
    if not spent:
        return
    print(f"\nWhere a trial's time goes (hyperflow, parallelism=1, {min(300, n)} trials, cProfile), ms a trial:\n")
    print("| " + " | ".join(spent) + " |\n|" + "---:|" * len(spent))
    print("| " + " | ".join(f"{1000 * v:.1f}" for v in spent.values()) + " |")
    print("\nIts store traffic per trial: MLflow's calls (how many; ms each, under the profiler), the database's:\n")
    print("| per trial | count | ms each |\n|---|---:|---:|")
    for key, count in traffic.items():
        if not key.endswith(" (ms)"):
            ms = traffic.get(f"{key} (ms)")
            print(f"| {key} | {count:.2f} | {'' if ms is None else f'{ms / count:.1f}'} |")


if __name__ == "__main__":  # the objective from the module, not __main__: worker processes import it by name
    import suite_scale

    suite_scale.main(sys.argv[1:])
