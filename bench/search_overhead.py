"""Tracking overhead of a search: the same trials with MLflow tracking (the search workflow: parent and
child runs, batched metrics, pruning bookkeeping, the best model logged) vs without (the bare core:
setup_training + fit on the same points), one trial at a time on both sides (``parallelism=1``).

Rounds alternate which side goes first; every round is printed, then the medians, the spread (min–max
and interquartile range) and, last, the median of the per-round ratios (adjacent runs share the load).

    python bench/search_overhead.py --trials 30 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

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


def untracked(points: list[dict], base) -> float:
    dataset = load_data(base)
    start = time.perf_counter()
    for point in points:
        setup = setup_training(base.replace(**point), dataset=dataset)
        setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    return time.perf_counter() - start


def tracked(space: str, base, trials: int) -> float:
    settings = build_search_config({"space": space, "strategy": "grid", "pruner": "none", "max_evals": trials,
                                    "register": "false", "seed_presets": "false", "parallelism": 1})
    start = time.perf_counter()
    SearchRunner(settings, base).run()
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    """min–max and the interquartile range."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"min-max {min(values):.2f}-{max(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials per search (an even number)")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    on: list[float] = []
    off: list[float] = []
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
                    off.append(untracked(points, base.replace(log_model=False)))
                else:
                    on.append(tracked(str(space), base, args.trials))
            print(f"round {i + 1} ({sides[0]} first): tracked {on[-1]:.2f} s, untracked {off[-1]:.2f} s, "
                  f"ratio {on[-1] / off[-1]:.3f}", flush=True)
    ratios = [a / b for a, b in zip(on, off)]
    print(f"{args.trials} trials x 20 epochs on digits, {args.rounds} rounds, load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  tracked search    median {statistics.median(on):7.2f} s   ({spread(on)})")
    print(f"  untracked trials  median {statistics.median(off):7.2f} s   ({spread(off)})")
    print(f"  per-round ratios  {', '.join(f'{r:.3f}' for r in ratios)}  ({spread(ratios)})")
    print(f"ratio tracked / untracked: {statistics.median(ratios):.3f}  (median of the rounds; target <= 1.10)")


if __name__ == "__main__":
    main()
