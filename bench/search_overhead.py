"""Tracking overhead of a search: the same trials with MLflow tracking (the search workflow: parent and
child runs, batched metrics, pruning bookkeeping, the best model logged) vs without (the bare core:
setup_training + fit on the same points), one trial at a time on both sides (``parallelism=1``).

Rounds alternate which side goes first; every round is printed, then the medians, the spread (min–max
and interquartile range) and, last, the median of the per-round ratios (adjacent runs share the load).
The CPU seconds of this process (all threads) are printed too: on a machine shared with other jobs they
move less than wall time, and their difference is the work tracking adds.

    python bench/search_overhead.py --trials 30 --rounds 6
    python bench/search_overhead.py --trials 30 --rounds 1 --phases   # where a tracked search's time goes
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.core.assembly import load_data, setup_training
from hyperflow.search.runner import SearchRunner
from hyperflow.search.space import grid_points, load_space

SPACE = """
lr: {type: loguniform, low: 3.0e-4, high: 1.0e-2, grid: %d}
width: {type: choice, values: [128, 256]}
epochs: 20
"""


def untracked(points: list[dict], base) -> tuple[float, float]:
    """Wall and CPU seconds of training the points with the bare core."""
    dataset = load_data(base)
    start, cpu = time.perf_counter(), time.process_time()
    for point in points:
        setup = setup_training(base.replace(**point), dataset=dataset)
        setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    return time.perf_counter() - start, time.process_time() - cpu


def tracked(space: str, base, trials: int) -> tuple[float, float]:
    """Wall and CPU seconds of the search over the same points."""
    settings = build_search_config(
        {
            "space": space,
            "strategy": "grid",
            "pruner": "none",
            "max_evals": str(trials),
            "register": "false",
            "seed_presets": "false",
            "parallelism": "1",
        }
    )
    start, cpu = time.perf_counter(), time.process_time()
    SearchRunner(settings, base).run()
    return time.perf_counter() - start, time.process_time() - cpu


@contextmanager
def phases() -> Iterator[dict[str, list[float]]]:
    """Wall seconds spent in the search's parts and MLflow calls (any thread), by name."""
    from mlflow.tracking import MlflowClient

    from hyperflow.core.trainer import Trainer
    from hyperflow.search import finish, runner
    from hyperflow.tracking import search_store

    spent: dict[str, list[float]] = defaultdict(list)
    targets = [
        (runner.SearchRunner, "prepare"),
        (runner.SearchRunner, "_record_settings"),
        (Trainer, "fit"),
        (runner.tracking.BackgroundCalls, "close"),
        (finish, "_log_table"),
        (finish, "_log_best_model"),
        (finish, "parameter_importance"),
        (finish.tracking, "log_figure"),
        (finish.tracking, "log_model"),
        (search_store.tracking, "log_dataset"),
        (MlflowClient, "create_run"),
        (MlflowClient, "log_batch"),
        (MlflowClient, "set_terminated"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def timed(label: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label].append(time.perf_counter() - start)

        return call

    for owner, name, fn in saved:
        setattr(owner, name, timed(f"{getattr(owner, '__name__', owner)}.{name}", fn))
    try:
        yield spent
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def spread(values: list[float]) -> str:
    """min–max and the interquartile range."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"min-max {min(values):.2f}-{max(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials per search (an even number)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--phases", action="store_true", help="also time the parts of one more tracked search")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    on: list[float] = []
    off: list[float] = []
    cpu: dict[str, list[float]] = {"tracked": [], "untracked": []}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        space = Path(tmp, "space.yaml")
        space.write_text(SPACE % (args.trials // 2))
        points = grid_points(load_space(space))[: args.trials]
        base = build_config({"progress": False, "experiment": "overhead"})
        tracked(str(space), base, 2)  # warm-up: database schema, imports
        for i in range(args.rounds):
            sides = ("untracked", "tracked") if i % 2 == 0 else ("tracked", "untracked")
            for side in sides:
                if side == "untracked":
                    wall, used = untracked(points, base.replace(log_model=False))
                    off.append(wall)
                else:
                    wall, used = tracked(str(space), base, args.trials)
                    on.append(wall)
                cpu[side].append(used)
            print(
                f"round {i + 1} ({sides[0]} first): tracked {on[-1]:.2f} s, untracked {off[-1]:.2f} s, "
                f"ratio {on[-1] / off[-1]:.3f}; CPU {cpu['tracked'][-1]:.2f} s vs {cpu['untracked'][-1]:.2f} s, "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        if args.phases:
            with phases() as spent:
                wall, _ = tracked(str(space), base, args.trials)
            print(
                f"one more tracked search, {wall:.2f} s; wall seconds by part (calls on the background thread "
                f"overlap the others):"
            )
            for label, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
                print(f"  {sum(times):7.3f} s  {len(times):4d} x {1000 * statistics.median(times):7.1f} ms  {label}")
    ratios = [a / b for a, b in zip(on, off)]
    print(
        f"{args.trials} trials x 20 epochs on digits, {args.rounds} rounds, load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"  tracked search    median {statistics.median(on):7.2f} s   ({spread(on)})")
    print(f"  untracked trials  median {statistics.median(off):7.2f} s   ({spread(off)})")
    print(f"  per-round ratios  {', '.join(f'{r:.3f}' for r in ratios)}  ({spread(ratios)})")
    cpu_ratios = [a / b for a, b in zip(cpu["tracked"], cpu["untracked"])]
    print(
        f"  CPU seconds       tracked median {statistics.median(cpu['tracked']):.2f}, untracked median "
        f"{statistics.median(cpu['untracked']):.2f}; per-round ratios {', '.join(f'{r:.3f}' for r in cpu_ratios)}"
    )
    print(f"ratio tracked / untracked: {statistics.median(ratios):.3f}  (median of the rounds; target <= 1.10)")


if __name__ == "__main__":
    main()
