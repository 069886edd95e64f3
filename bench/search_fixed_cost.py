"""A search's fixed cost, this checkout against an earlier commit: ``hyperflow search`` run as users run it
(the shipped defaults, ``parallelism=auto``) with a few trials, so that the time around the trials shows:
process start -> first trial's start (imports, checks, the search run, the workers), last trial's end ->
output closed (table, plots, best model, registration, exit), and the whole wall time. The two sides
alternate within each round (which goes first alternates too); each run gets a copy of one empty sqlite
store and its own folder; the earlier commit runs from a temporary git worktree (``PYTHONPATH`` at its
``src``). Trials run at once pick their points in the order they finish, so the trials differ between runs:
the two phases above are what to compare, more than the wall time.

    python bench/search_fixed_cost.py --before 3b0cedf --rounds 6
    python bench/search_fixed_cost.py --before 3b0cedf --rounds 6 --trials 30 --set strategy=random pruner=none
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]


def run_search(src: Path, store: Path, seed: int, extra: list[str]) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(dir=store.parent))
    shutil.copy(store, folder / "mlflow.db")
    uri = f"sqlite:///{folder}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(src))
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "hyperflow", "search", f"seed={seed}", *extra],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
    )
    closed = time.time()
    if done.returncode != 0:
        raise SystemExit(f"hyperflow search failed at {src}:\n{done.stderr[-3000:]}")
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
    trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
    return {
        "start": min(r.info.start_time for r in trials) / 1000 - start,
        "end": closed - max(r.info.end_time for r in trials) / 1000,
        "wall": closed - start,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier git revision")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--trials", type=int, default=4, help="max_evals of each search")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more settings for both sides, e.g. strategy=random pruner=none: the same trials on "
        "both sides, whichever finishes first (each point is seeded by seed and trial number)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hyperflow-fixed-cost-"))
    worktree = work / "before"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
        check=True,
        capture_output=True,
    )
    sides = {"this checkout": ROOT / "src", f"before ({args.before})": worktree / "src"}
    store = work / "empty.db"
    mlflow.MlflowClient(f"sqlite:///{store}").search_experiments()  # every run starts from a copy of it
    extra = [f"max_evals={args.trials}", "register=true", "model_name=fixed-cost", *args.set]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    try:
        print(
            f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {args.trials} trials a search"
            f"{'; ' + ' '.join(args.set) if args.set else ''}"
        )
        for r in range(args.rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                res = run_search(sides[name], store, r, extra)
                results[name].append(res)
                print(
                    f"round {r}  {name:<24} start -> first trial {res['start']:5.2f} s   last trial end -> output "
                    f"closed {res['end']:5.2f} s   wall {res['wall']:5.2f} s   (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedian (min-max), seconds:")
    for name, rows in results.items():
        print(
            f"  {name:<24} start -> first trial {spread([x['start'] for x in rows])}   last trial end -> "
            f"output closed {spread([x['end'] for x in rows])}   wall {spread([x['wall'] for x in rows])}"
        )
    a, b = results.values()
    for key in ("start", "end", "wall"):
        diffs = [x[key] - y[key] for x, y in zip(a, b)]
        print(
            f"  paired difference, this checkout - before, {key}: median {statistics.median(diffs):+.2f} s "
            f"({min(diffs):+.2f} to {max(diffs):+.2f})"
        )


if __name__ == "__main__":
    main()
