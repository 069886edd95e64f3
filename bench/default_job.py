"""The default job as users run it, side by side: `mlflow run . -e search --env-manager local -P seed=N` with
the shipped defaults (``parallelism=auto``), the same with ``-P parallelism=1`` (trials one at a time), and
optionally the project at an earlier commit (``--before REV``, checked out in a temporary git worktree and
run through its own MLproject). Each run gets a fresh sqlite store; variants alternate within each seed, in
a rotating order. Reported per run: whole-process wall time, trials, trials per minute over the whole
process and over the trial phase (first trial's start to last trial's end, from the runs' times in the
store: what parallelism changes, without the fixed cost of the CLI, imports and the best model that both
variants pay; and epochs trained per minute over that phase, which depends less on how many trials the
pruner cut short, though an epoch's cost differs between trials; and the seconds from the search run's end to the
command's output closed), the search's
best val_loss and the best model's test accuracy (read back from the store);
then per variant the median and spread, and the paired ratios against the default.

    python bench/default_job.py --seeds 0 1 2 3 4 --before fbefcde
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]


def run_job(project: Path, seed: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = uri
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(project),
            "-e",
            "search",
            "--env-manager",
            "local",
            "-P",
            f"seed={seed}",
            *extra,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
        wall, closed = time.perf_counter() - start, time.time()
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
        search = next(r for r in runs if r.data.tags.get("hyperflow.role") == "search")
        trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
        phase = (max(r.info.end_time for r in trials) - min(r.info.start_time for r in trials)) / 1000
        epochs = sum(r.data.metrics.get("epochs_run", 0) for r in trials)
        tail = closed - search.info.end_time / 1000  # the search run's end -> the command's output closed
        return {
            "wall": wall,
            "trials": len(trials),
            "per_min": 60 * len(trials) / wall,
            "phase": phase,
            "phase_per_min": 60 * len(trials) / phase,
            "epochs_per_min": 60 * epochs / phase,
            "tail": tail,
            "val_loss": search.data.metrics.get("best_val_loss", float("nan")),
            "test_accuracy": search.data.metrics.get("best_test_accuracy", float("nan")),
        }


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.4g} (min {min(values):.4g}, max {max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--before", help="also run the project at this git revision")
    args = parser.parse_args()
    variants: dict[str, tuple[Path, list[str]]] = {
        "default": (ROOT, []),
        "parallelism=1": (ROOT, ["-P", "parallelism=1"]),
    }
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp(prefix="hyperflow-before-"))
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
            check=True,
            capture_output=True,
        )
        variants[f"before ({args.before})"] = (worktree, [])
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    try:
        print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
        for i, seed in enumerate(args.seeds):
            names = list(variants)
            names = names[i % len(names) :] + names[: i % len(names)]
            for name in names:
                project, extra = variants[name]
                r = run_job(project, seed, extra)
                results[name].append(r)
                print(
                    f"seed {seed}  {name:<22} {r['wall']:6.1f} s  {r['trials']:3d} trials  {r['per_min']:5.1f}/min  "
                    f"trial phase {r['phase']:5.1f} s, {r['phase_per_min']:5.1f}/min, "
                    f"{r['epochs_per_min']:5.0f} epochs/min  "
                    f"search end -> output closed {r['tail']:4.2f} s  "
                    f"best val_loss {r['val_loss']:.4f}  test accuracy {r['test_accuracy']:.4f}  "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True
            )
    print()
    for name, rs in results.items():
        print(
            f"{name:<22} wall {spread([r['wall'] for r in rs])} s; trials/min {spread([r['per_min'] for r in rs])}; "
            f"trial phase trials/min {spread([r['phase_per_min'] for r in rs])}; "
            f"trial phase epochs/min {spread([r['epochs_per_min'] for r in rs])}; "
            f"search end -> output closed {spread([r['tail'] for r in rs])} s; "
            f"test accuracy mean {statistics.mean(r['test_accuracy'] for r in rs):.4f}; "
            f"best val_loss mean {statistics.mean(r['val_loss'] for r in rs):.4f}"
        )
    base = results["default"]
    for name, rs in results.items():
        if name == "default":
            continue
        ratios = [b["wall"] / r["wall"] for b, r in zip(base, rs)]
        speed = [b["per_min"] / r["per_min"] for b, r in zip(base, rs)]
        phase = [b["phase_per_min"] / r["phase_per_min"] for b, r in zip(base, rs)]
        epochs = [b["epochs_per_min"] / r["epochs_per_min"] for b, r in zip(base, rs)]
        dloss = [b["val_loss"] - r["val_loss"] for b, r in zip(base, rs)]
        se = statistics.stdev(dloss) / len(dloss) ** 0.5 if len(dloss) > 1 else float("nan")
        print(
            f"default vs {name}: wall ratio {spread(ratios)}; trials/min ratio {spread(speed)}; "
            f"trial phase trials/min ratio {spread(phase)}; epochs/min ratio {spread(epochs)}; "
            f"best val_loss difference (default - {name}) {statistics.mean(dloss):+.4f} ± {se:.4f} (paired)"
        )


if __name__ == "__main__":
    main()
