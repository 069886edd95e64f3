"""Tracking overhead of a search: the same trials with MLflow tracking (the search workflow: parent and
child runs, batched metrics, pruning bookkeeping, the best model logged) vs without (the bare core:
setup_training + fit on the same points). Interleaved rounds; prints the median wall times and ratio.

    python bench/search_overhead.py --trials 12 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlflow

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.search.space import grid_points, load_space
from hyperflow.core.assembly import load_data, setup_training
from hyperflow.search.runner import SearchRunner

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
                                    "register": "false", "seed_presets": "false"})
    start = time.perf_counter()
    SearchRunner(settings, base).run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12, help="trials per search (an even number)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        space = Path(tmp, "space.yaml")
        space.write_text(SPACE % (args.trials // 2))
        points = grid_points(load_space(space))[: args.trials]
        base = build_config({"progress": False, "experiment": "overhead"})
        tracked(str(space), base, 2)  # warm-up: database schema, imports
        on, off = [], []
        for _ in range(args.rounds):
            off.append(untracked(points, base.replace(log_model=False)))
            on.append(tracked(str(space), base, args.trials))
    t_on, t_off = statistics.median(on), statistics.median(off)
    print(f"{args.trials} trials x 20 epochs on digits, median of {args.rounds} interleaved rounds")
    print(f"  tracked search    {t_on:7.2f} s   ({', '.join(f'{x:.2f}' for x in on)})")
    print(f"  untracked trials  {t_off:7.2f} s   ({', '.join(f'{x:.2f}' for x in off)})")
    print(f"  ratio tracked / untracked: {t_on / t_off:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
