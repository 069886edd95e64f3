"""Trials per minute on Spark: backend=spark with parallelism=2 vs 1 on this machine (local[2]), torch
threads set per trial (2 for one trial at a time, 1 each for two). Interleaved rounds, one SparkSession,
the same random-search points (same seed) for both; trials per minute counted over the trial phase
(first child start to last child end, from MLflow) and over the whole search.

    python bench/spark.py --trials 8 --rounds 2
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
from hyperflow.engine import spark
from hyperflow.workflows.search import search as run_search

SPACE = """
lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
width: {type: choice, values: [128, 256]}
epochs: %d
"""


def one_search(session, space: Path, parallelism: int, trials: int) -> tuple[float, float]:
    settings = build_search_config(
        {
            "space": str(space),
            "backend": "spark",
            "parallelism": parallelism,
            "max_evals": trials,
            "strategy": "random",
            "pruner": "none",
            "register": "false",
            "seed_presets": "false",
        }
    )
    start = time.perf_counter()
    outcome = run_search(
        settings, build_config({"progress": "false", "experiment": "spark-bench"}), spark_session=session
    )
    total = time.perf_counter() - start
    client = mlflow.MlflowClient()
    runs = [client.get_run(r.run_id).info for r in outcome.records]
    phase = (max(r.end_time for r in runs) - min(r.start_time for r in runs)) / 1000
    return 60 * len(runs) / phase, 60 * len(runs) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40, help="epochs per trial (longer trials, less overhead)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        space = Path(tmp, "space.yaml")
        space.write_text(SPACE % args.epochs)
        session = spark.session_for(None, 2)
        one_search(session, space, 2, 2)  # warm-up: schema, the worker daemon's imports
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for parallelism in (1, 2):
                results[parallelism].append(one_search(session, space, parallelism, args.trials))
                print(
                    f"  parallelism={parallelism}: {results[parallelism][-1][0]:.1f} trials/min (trial phase), "
                    f"{results[parallelism][-1][1]:.1f} (whole search)",
                    flush=True,
                )
        session.stop()
    phase = {p: statistics.median(r[0] for r in v) for p, v in results.items()}
    whole = {p: statistics.median(r[1] for r in v) for p, v in results.items()}
    print(f"{args.trials} trials x {args.epochs} epochs on digits, local[2], median of {args.rounds} rounds")
    print(
        f"  trials/min, trial phase:   parallelism=1 {phase[1]:.1f}   parallelism=2 {phase[2]:.1f}   "
        f"ratio {phase[2] / phase[1]:.2f}  (target >= 1.7)"
    )
    print(
        f"  trials/min, whole search:  parallelism=1 {whole[1]:.1f}   parallelism=2 {whole[2]:.1f}   "
        f"ratio {whole[2] / whole[1]:.2f}"
    )


if __name__ == "__main__":
    main()
