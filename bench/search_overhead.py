"""Tracking overhead of a search: the same trials with MLflow tracking (the search workflow: parent and
child runs, batched metrics, pruning bookkeeping, the best model logged) vs without (the bare core:
setup_training + fit on the same points), one trial at a time on both sides (``parallelism=1``).
The tracked side is the command line (``hyperflow.cli.main``, what ``hyperflow search`` runs, start-up
checks and summary included), so the bench needs no private name of the search and runs against any
version of the package (``bench/before_after.py`` runs it with ``PYTHONPATH`` naming the version). A warm-up
search takes the imports and the store's schema out of the measurement; each measured search then starts its child
processes afresh, as a user's does (no fork server left by an earlier search: :func:`fresh_start`).

Rounds alternate which side goes first; every round is printed, then the medians, the spread (min–max
and interquartile range) and, last, the median of the per-round ratios (adjacent runs share the load).
The CPU seconds of this process (all threads) are printed too: on a machine shared with other jobs they
move less than wall time, and their difference is the work tracking adds.

    python bench/search_overhead.py --trials 30 --rounds 6
    python bench/search_overhead.py --trials 30 --rounds 1 --phases   # where a tracked search's time goes
    python bench/search_overhead.py --rounds 1 --json out.json       # also every number, machine-readable

``--ab VARIANT ...`` compares ways of sending a one-at-a-time search's MLflow calls instead: each search is
``hyperflow search parallelism=1 max_evals=<trials>`` with every other setting at its default (what users
run), a fresh process in a fresh folder with its own sqlite store; each round runs every variant once, the
order rotating from round to round. Printed: every search's whole-process wall time and the search run's
own duration (from the store), then per variant the medians and spread, and the per-round ratios against
the first variant. The variants (:data:`VARIANTS`): ``shipped`` (the code as it is: the calls on one
background thread of the search's process, or of each trial worker), ``async`` (each call made at once,
with MLflow's own ``mlflow.config.enable_async_logging()``) and ``sync`` (each call made at once, in the
search's process and in the workers: no background thread). ``--parallelism N`` runs the searches with N
trials at once (default 1). Before issue 24 the search sent them from a separate process
(``tracking/sidecar.py``): this bench at edc54e3 compared that (``shipped`` there) with ``thread`` (today's
``shipped``); docs/history/benchmarks-journal.md has the rounds.

    python bench/search_overhead.py --ab shipped async --trials 30 --rounds 10
    python bench/search_overhead.py --ab shipped sync --trials 30 --rounds 6 --parallelism 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

import hyperflow

# the command line, not the search's classes: bench/before_after.py runs this file against earlier
# versions of the package too (issue 24's base, db84cf3), where those classes differ
from hyperflow.cli import main as hyperflow_command
from hyperflow.config import build_config
from hyperflow.core.assembly import load_data, setup_training

LR_LOW, LR_HIGH, WIDTHS, EPOCHS = 3.0e-4, 1.0e-2, (128, 256), 20
SPACE = f"""
lr: {{type: loguniform, low: {LR_LOW}, high: {LR_HIGH}, grid: %d}}
width: {{type: choice, values: [{", ".join(map(str, WIDTHS))}]}}
epochs: {EPOCHS}
"""


def grid(trials: int) -> list[dict]:
    """The points of SPACE's grid search, in its order (lr log-spaced, each with every width)."""
    lrs = [float(v) for v in np.geomspace(LR_LOW, LR_HIGH, trials // 2)]
    return [{"lr": lr, "width": width, "epochs": EPOCHS} for lr in lrs for width in WIDTHS][:trials]


def untracked(points: list[dict], base) -> tuple[float, float]:
    """Wall and CPU seconds of training the points with the bare core."""
    dataset = load_data(base)
    start, cpu = time.perf_counter(), time.process_time()
    for point in points:
        setup = setup_training(base.replace(**point), dataset=dataset)
        setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    return time.perf_counter() - start, time.process_time() - cpu


def fresh_start() -> None:
    """Stop the fork server an earlier search of this process left running (multiprocessing keeps it for the
    process's life), so that each measured search starts its child processes as a user's ``hyperflow search``
    does. ``ForkServer._stop`` is multiprocessing's own (what its tests call): no public API stops it. Without this
    a version whose one-at-a-time search starts a child process (the sidecar before issue 24) got it at once from
    the warm-up's fork server, 14 % ahead of what a user's search sees (docs/benchmarks.md)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


def tracked(space: str, trials: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``hyperflow search`` over the same points (its output kept out of sight), started
    as a user's search starts (:func:`fresh_start`)."""
    fresh_start()
    argv = ["search", f"space={space}", "strategy=grid", "pruner=none", f"max_evals={trials}", "register=false"]
    argv += ["seed_presets=false", "parallelism=1", "progress=false", "experiment=overhead"]
    output = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(output):
        code = hyperflow_command(argv)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"hyperflow {' '.join(argv)}: exit {code}\n{output.getvalue()[-3000:]}")
    return wall, used


# the parts --phases times, as module:attribute.path; parts a version of the package lacks are left out
PHASES = [
    "hyperflow.search.runner:SearchRunner.prepare",
    "hyperflow.search.runner:SearchRunner._record_settings",
    "hyperflow.core.trainer:Trainer.fit",
    "hyperflow.tracking:BackgroundCalls.close",
    "hyperflow.search.finish:_log_table",
    "hyperflow.search.finish:_log_best_model",
    "hyperflow.search.finish:parameter_importance",
    "hyperflow.tracking:log_figure",
    "hyperflow.tracking:log_model",
    "hyperflow.tracking:log_dataset",
    "mlflow.tracking:MlflowClient.create_run",
    "mlflow.tracking:MlflowClient.log_batch",
    "mlflow.tracking:MlflowClient.set_terminated",
]


def phase_targets() -> list[tuple[Any, str]]:
    """(owner, attribute name) of each PHASES entry this version of the package has."""
    targets = []
    for entry in PHASES:
        module, _, path = entry.partition(":")
        *owners, name = path.split(".")
        try:
            owner: Any = importlib.import_module(module)
            for part in owners:
                owner = getattr(owner, part)
            getattr(owner, name)
        except (ImportError, AttributeError):
            print(f"  (--phases: {entry} not in this version, not timed)")
            continue
        targets.append((owner, name))
    return targets


@contextmanager
def phases() -> Iterator[dict[str, list[float]]]:
    """Wall seconds spent in the search's parts and MLflow calls (any thread), by name."""
    spent: dict[str, list[float]] = defaultdict(list)
    saved = [(owner, name, getattr(owner, name)) for owner, name in phase_targets()]

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


class SyncCalls:
    """The search's call queue's interface, each call made at once (the ``async`` variant)."""

    def __init__(self, *args: Any) -> None:
        pass

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    failure = None

    def drain(self) -> None:
        pass

    def close(self) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient()._tracking_client.store.flush_async_logging()


VARIANT = "HYPERFLOW_BENCH_VARIANT"  # the variant, for the trial workers' fork server (which imports this file)


def use_variant(name: str) -> None:
    """In a search's process, before the command runs: send its calls as variant ``name`` does."""
    from hyperflow import tracking

    if name == "async":
        mlflow.config.enable_async_logging(True)
        tracking.BackgroundCalls = SyncCalls
    elif name == "sync":
        from hyperflow.runtime import processes

        tracking.BackgroundCalls = SyncCalls
        os.environ[VARIANT] = name
        if __name__ == "__main__":  # the workers are forked from a fork server that imports this file too
            processes.PRELOAD.insert(-1, Path(__file__).stem)


VARIANTS = ("shipped", "async", "sync")


def one_search(variant: str, trials: int, parallelism: int = 1) -> tuple[float, float, int]:
    """Whole-process wall seconds of ``hyperflow search parallelism=1`` as ``variant``, the search run's
    duration from the store, and its trials."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = uri
        command = [sys.executable, __file__, "--as", variant, "search", f"parallelism={parallelism}"]
        command.append(f"max_evals={trials}")
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=5000)
        search = next(r for r in runs if r.data.tags.get("hyperflow.role") == "search")
        done_trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
        if any(r.info.status != "FINISHED" or "hyperflow.trial_status" not in r.data.tags for r in done_trials):
            raise SystemExit(f"{variant}: a trial run was not recorded in full")
        return wall, (search.info.end_time - search.info.start_time) / 1000, len(done_trials)


def ab(variants: list[str], trials: int, rounds: int, parallelism: int = 1) -> None:
    walls: dict[str, list[float]] = {v: [] for v in variants}
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(rounds):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        line = []
        for variant in order:
            wall, run, count = one_search(variant, trials, parallelism)
            walls[variant].append(wall)
            runs[variant].append(run)
            line.append(f"{variant} {wall:.2f} s (search run {run:.2f} s, {count} trials)")
        print(f"round {i + 1}: {'; '.join(line)}; load {os.getloadavg()[0]:.2f}", flush=True)
    print(
        f"hyperflow search parallelism={parallelism} max_evals={trials}, {rounds} rounds, load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    first = variants[0]
    for variant in variants:
        print(
            f"  {variant:8s} wall median {statistics.median(walls[variant]):6.2f} s ({spread(walls[variant])}); "
            f"search run median {statistics.median(runs[variant]):6.2f} s ({spread(runs[variant])})"
        )
        if variant != first:
            ratios = [a / b for a, b in zip(walls[variant], walls[first])]
            print(
                f"    wall / {first} per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
                f"median {statistics.median(ratios):.3f} ({spread(ratios)})"
            )


def main() -> None:
    if sys.argv[1:2] == ["--as"]:  # one search's process (--ab)
        from hyperflow import cli

        use_variant(sys.argv[2])
        sys.argv = ["hyperflow", *sys.argv[3:]]
        sys.exit(cli.main())  # as the hyperflow script runs it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials per search (an even number)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--phases", action="store_true", help="also time the parts of one more tracked search")
    parser.add_argument("--json", type=Path, help="also write every round's numbers to this file")
    parser.add_argument("--ab", nargs="+", choices=VARIANTS, help="compare these variants instead (see above)")
    parser.add_argument("--parallelism", type=int, default=1, help="with --ab: trials at once")
    args = parser.parse_args()
    if args.ab:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        ab(args.ab, args.trials, args.rounds, args.parallelism)
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {hyperflow.__file__}", flush=True)
    on: list[float] = []
    off: list[float] = []
    cpu: dict[str, list[float]] = {"tracked": [], "untracked": []}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        space = Path(tmp, "space.yaml")
        space.write_text(SPACE % (args.trials // 2))
        points = grid(args.trials)
        base = build_config({"progress": False, "experiment": "overhead"})
        tracked(str(space), 2)  # warm-up: database schema, imports
        for i in range(args.rounds):
            sides = ("untracked", "tracked") if i % 2 == 0 else ("tracked", "untracked")
            for side in sides:
                if side == "untracked":
                    wall, used = untracked(points, base.replace(log_model=False))
                    off.append(wall)
                else:
                    wall, used = tracked(str(space), args.trials)
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
                wall, _ = tracked(str(space), args.trials)
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
    if args.json:
        numbers = {"tracked_s": on, "untracked_s": off, "ratio": ratios}
        numbers |= {"cpu_tracked_s": cpu["tracked"], "cpu_untracked_s": cpu["untracked"]}
        args.json.write_text(json.dumps({"hyperflow": hyperflow.__file__, "trials": args.trials, **numbers}))


if __name__ == "__main__":
    main()
elif os.environ.get(VARIANT):  # imported by the trial workers' fork server
    use_variant(os.environ[VARIANT])
