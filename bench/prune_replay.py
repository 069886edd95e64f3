"""What the shipped median rule would cost on curves trained to the end: replays ``MedianPruner`` (hyperflow's
own class) over the unpruned searches that bench/search.py cached, trial by trial in their order, and
reports per setting the epochs the search would have trained and whether its best trial would have been
kept. A replay keeps the trial sequence fixed (a real pruned search proposes other trials once some are cut),
so it ranks pruner settings; bench/search.py measures the one chosen.

    python bench/search.py --methods optuna default:pruner=none --seeds 0 1 2 3 4 5 6 7 8 9   # the curves
    python bench/prune_replay.py --methods optuna default:pruner=none --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import cached, code_key

from hyperflow.core.pruning import MedianPruner


def replay(trials: list[dict[str, Any]], pruner: MedianPruner) -> tuple[float, int]:
    """(best val loss of the trials left to finish, epochs trained) had ``pruner`` watched these trials; the
    peers are the finished trials, as in the search."""
    peers: list[list[float]] = []
    best, epochs = math.inf, 0
    for trial in trials:
        if trial["status"] != "ok":
            epochs += trial["epochs"]
            continue
        values: list[float] = []
        for epoch, value in enumerate(trial["history"], 1):
            values.append(value if math.isfinite(value) else math.inf)
            if pruner.should_prune(peers, epoch, values):
                break
        else:
            best = min(best, min(values))
            peers.append(list(trial["history"]))
        epochs += len(values)
    return best, epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["optuna"], help="unpruned methods of bench/search.py")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--min-epochs", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--patience", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--startup-trials", type=int, default=3)
    args = p.parse_args()
    print(f"python {' '.join(sys.argv)}")
    for spec in args.methods:
        key = code_key(spec, args.trials)
        runs = {s: t for s in args.seeds if (t := cached(spec, s, args.trials, key)) is not None}
        if not runs:
            print(f"\n{spec}: no fresh cached searches; run bench/search.py --methods {spec} first")
            continue
        full = {s: min(t["loss"] for t in trials if t["status"] == "ok") for s, trials in runs.items()}
        print(
            f"\n{spec}, {len(runs)} seeds ({', '.join(map(str, runs))}), unpruned best "
            f"{statistics.mean(full.values()):.4f}, startup trials {args.startup_trials}"
        )
        print("| min_epochs | patience | epochs | best lost in | best val loss added |")
        print("|---:|---:|---:|---:|---:|")
        for min_epochs in args.min_epochs:
            for patience in args.patience:
                pruner = MedianPruner(min_epochs, args.startup_trials, patience)
                out = {s: replay(trials, pruner) for s, trials in runs.items()}
                added = [out[s][0] - full[s] for s in runs]
                print(
                    f"| {min_epochs} | {patience} | {statistics.mean(e for _, e in out.values()):.0f} | "
                    f"{sum(a > 1e-12 for a in added)}/{len(runs)} | +{statistics.mean(added):.4f} |"
                )


if __name__ == "__main__":
    main()
