"""Cost of MLflow tracking: the same training with the metrics callback on and off.

"off" is hyperflow.core.assembly.setup_training(config) + trainer.fit; "on" is the same plus the tracking
callback hyperflow.tracking.MlflowMetrics(run_id, flush_secs), inside an MLflow run on a temporary
SQLite store. Only trainer.fit is timed (it includes the callback's final flush in on_train_end);
setup, run start and run end are outside the timed region. The variants (off, flush_secs=1.0,
flush_secs=0, and a candidate that logs asynchronously) are interleaved in rotating order after a
warm-up round. The 1.10x target is decided by an A/B: for each variant, pairs of fits (off, on) back
to back, order alternating, median of the per-pair ratios; the time spent inside the callback is also
measured directly, which is immune to the drifting speed of a shared machine.

A second table is the one-off cost of the whole hyperflow.workflows.train.train(config) (run, params,
dataset input, metrics, learning-curve figure, test metrics, model logging) against setup_training +
fit without MLflow, with a breakdown by step. Information only, no target.

    python bench/tracking.py                     # default config (digits, 30 epochs), 7 rounds
    python bench/tracking.py --rounds 7 --workflow-rounds 3 epochs=30
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before the heavy imports (mlflow, torch, hyperflow)
_WALL0 = time.time()

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import torch

import hyperflow.tracking as tracking
import hyperflow.workflows.train as workflow
from hyperflow.config import TrainConfig, build_config
from hyperflow.core.assembly import load_data, setup_training

_IMPORT_SECONDS = time.perf_counter() - _T0


class AsyncMlflowMetrics(tracking.MlflowMetrics):
    """A candidate change, not hyperflow's code: log_batch(synchronous=False) so that the SQLite write runs
    on MLflow's logging thread; on_train_end waits until every batch is stored."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.operations: list[Any] = []

    def flush(self) -> None:
        if self.pending:
            self.operations.append(self.client.log_batch(self.run_id, metrics=self.pending, synchronous=False))
            self.pending = []
        self.last_flush = time.monotonic()

    def on_train_end(self, trainer: Any, result: Any) -> None:
        self.flush()
        for operation in self.operations:
            operation.wait()


def fit_once(config: TrainConfig, dataset: Any, variant: tuple[float, bool] | None) -> tuple[float, int, int, float]:
    """One fit; returns (seconds, log_batch calls, epochs, seconds inside the callback's hooks).
    variant: (flush_secs, asynchronous), or None for tracking off."""
    setup = setup_training(config, dataset=dataset)
    calls, inside = [0], [0.0]
    run = None
    if variant is not None:
        flush_secs, asynchronous = variant
        run = mlflow.start_run()
        callback = (AsyncMlflowMetrics if asynchronous else tracking.MlflowMetrics)(run.info.run_id, flush_secs)
        original = callback.client.log_batch

        def counted(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            return original(*a, **k)

        callback.client.log_batch = counted  # type: ignore[method-assign]
        for hook in ("on_train_start", "on_epoch_end", "on_train_end"):  # time spent inside the callback
            setattr(callback, hook, _timed(getattr(callback, hook), inside))
        setup.trainer.callbacks.append(callback)
    try:
        started = time.perf_counter()
        result = setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
        seconds = time.perf_counter() - started
    finally:
        if run is not None:
            mlflow.end_run()
    return seconds, calls[0], result.epochs_run, inside[0]


def _timed(fn: Any, acc: list[float]) -> Any:
    def wrapper(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[0] += time.perf_counter() - started

    return wrapper


class StepTimer:
    """Wraps module attributes so that the seconds spent in each are summed per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:  # not in this version of hyperflow
            return

        def timed(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, attr, timed)
        self.undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo.clear()


def workflow_once(config: TrainConfig) -> tuple[float, dict[str, float]]:
    """One hyperflow.workflows.train.train(config); returns total seconds and a per-step breakdown."""
    timer = StepTimer()
    timer.wrap(workflow, "setup_training", "setup_training (data, model)")
    timer.wrap(tracking, "run_tags", "run tags (git commit)")
    timer.wrap(mlflow, "start_run", "start_run")
    timer.wrap(tracking, "log_params", "log_params")
    timer.wrap(tracking, "log_dataset", "log_dataset (log_input)")
    timer.wrap(workflow, "learning_curve", "learning-curve figure (matplotlib)")
    timer.wrap(tracking, "log_figure", "log_figure")
    timer.wrap(mlflow, "log_metrics", "test metrics + log_metrics")
    timer.wrap(tracking, "log_results", "log_results (final metrics, tags)")
    timer.wrap(tracking, "log_model", "log_model (pyfunc)")
    timer.wrap(mlflow, "end_run", "end_run")
    try:
        started = time.perf_counter()
        outcome = workflow.train(config)
        total = time.perf_counter() - started
    finally:
        timer.restore()
    steps = dict(timer.seconds)
    steps["trainer.fit (with MlflowMetrics)"] = outcome.result.seconds
    return total, steps


def plain_once(config: TrainConfig) -> tuple[float, float]:
    """setup_training (loads the data) + fit, no MLflow; returns (total, fit) seconds."""
    started = time.perf_counter()
    setup = setup_training(config)
    result = setup.trainer.fit(setup.dataset.X_train, setup.dataset.y_train, setup.dataset.X_val, setup.dataset.y_val)
    return time.perf_counter() - started, result.seconds


def cold_child(config: TrainConfig, store: str) -> None:
    """In a new process: one train(config) on the given store, printed as JSON for the parent."""
    mlflow.set_tracking_uri(store)
    total, steps = workflow_once(config)
    print(
        json.dumps(
            {"imports": _IMPORT_SECONDS, "total": total, "steps": steps, "wall0": _WALL0, "wall_end": time.time()}
        ),
        flush=True,
    )


def cold_run(settings: list[str], store: str) -> dict:
    """One new process running train(config), like one `hyperflow train` command: wall time, import
    time, the step breakdown, and the time from its last line to its exit (atexit + interpreter teardown)."""
    env = {
        k: v
        for k, v in os.environ.items()  # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID
        if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")
    }
    started, wall_started = time.perf_counter(), time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--cold-child", "--store", store, *settings], capture_output=True, text=True, env=env
    )
    wall, wall_end = time.perf_counter() - started, time.time()
    if proc.returncode:
        raise RuntimeError(f"cold run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    out["startup"] = out["wall0"] - wall_started  # interpreter start up to the first line of this script
    out["exit"] = wall_end - out["wall_end"]  # after the last line: atexit handlers, interpreter teardown
    return out


def workflow_table(config: TrainConfig, args: argparse.Namespace) -> None:
    """train(config) vs setup_training + fit: warm (in this process, after a warm-up) and cold (a new
    process, like one `hyperflow train` command; first on a new store, then again on the same store)."""
    totals, plain, plain_fit = [], [], []
    steps: dict[str, list[float]] = defaultdict(list)
    for r in range(args.workflow_rounds + 1):
        total, breakdown = workflow_once(config)
        p_total, p_fit = plain_once(config)
        if r:
            totals.append(total)
            plain.append(p_total)
            plain_fit.append(p_fit)
            for k, v in breakdown.items():
                steps[k].append(v)
    store = f"sqlite:///{tempfile.mkdtemp(prefix='hyperflow-bench-cold-')}/mlflow.db"
    colds = [cold_run(args.settings, store), cold_run(args.settings, store)]
    med, plain_med = statistics.median(totals), statistics.median(plain)
    print(
        f"\nwhole workflow: hyperflow.workflows.train.train(config) vs setup_training + fit without MLflow "
        f"(information only)\nwarm = median of {args.workflow_rounds} rounds in this process after a warm-up; "
        f"cold = train(config) in a new process (like one `hyperflow train`), on a new SQLite store, then "
        f"again on that existing store"
    )
    print(f"{'':<42} {'warm s':>8} {'cold new':>9} {'cold again':>11}")
    print(
        f"{'setup_training + fit, no MLflow':<42} {plain_med:>8.3f}   (of which fit {statistics.median(plain_fit):.3f})"
    )
    print(
        f"{'train(config), whole workflow':<42} {med:>8.3f} {colds[0]['total']:>9.3f} {colds[1]['total']:>11.3f}"
        f"   (warm: {med / plain_med:.2f}x, +{med - plain_med:.3f} s)"
    )
    print("breakdown of train(config):")
    accounted, cold_accounted = 0.0, [0.0, 0.0]
    for k, v in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
        accounted += statistics.median(v)
        cells = []
        for i, cold in enumerate(colds):
            cold_accounted[i] += cold["steps"].get(k, 0.0)
            cells.append(cold["steps"].get(k, 0.0))
        print(f"  {k:<40} {statistics.median(v):>8.3f} {cells[0]:>9.3f} {cells[1]:>11.3f}")
    print(
        f"  {'other (tags, set_tag, test evaluate)':<40} {med - accounted:>8.3f} "
        f"{colds[0]['total'] - cold_accounted[0]:>9.3f} {colds[1]['total'] - cold_accounted[1]:>11.3f}"
    )
    print("whole new process (wall) =")
    for key, label in (
        ("startup", "interpreter start"),
        ("imports", "imports (mlflow, torch, hyperflow)"),
        ("total", "train(config)"),
        ("exit", "exit: atexit handlers + interpreter teardown"),
        ("wall", "wall"),
    ):
        print(f"  {label:<40} {'':>8} {colds[0][key]:>9.3f} {colds[1][key]:>11.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("settings", nargs="*", help="hyperflow settings key=value (default: the default config)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds after a warm-up round (default 7)")
    p.add_argument("--workflow-rounds", type=int, default=3, help="rounds of the whole-workflow table (0 = skip)")
    p.add_argument(
        "--ab-pairs",
        type=int,
        default=15,
        help="pairs of back-to-back fits per tracking variant in the A/B that decides the target (0 = skip)",
    )
    p.add_argument(
        "--no-async-variant",
        dest="async_variant",
        action="store_false",
        help="skip the candidate variant that calls log_batch(synchronous=False)",
    )
    p.add_argument("--cold-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if args.cold_child:
        cold_child(build_config({"progress": False, **dict(s.split("=", 1) for s in args.settings)}), args.store)
        return

    overrides = dict(s.split("=", 1) for s in args.settings)
    config = build_config({"progress": False, **overrides})
    tmp = tempfile.mkdtemp(prefix="hyperflow-bench-")
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-tracking")
    dataset = load_data(config)
    print(
        f"torch {torch.__version__} · mlflow {mlflow.__version__} · python {platform.python_version()} · "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"config: data={config.data} model={config.model} epochs={config.epochs} batch_size={config.batch_size} "
        f"schedule={config.schedule} threads={config.threads} · store {uri}"
    )

    variants: dict[str, tuple[float, bool] | None] = {
        "off": None,
        "on, flush_secs=1.0 (default)": (1.0, False),
        "on, flush_secs=0": (0.0, False),
    }
    if args.async_variant:
        variants["on, flush_secs=0, async (candidate)"] = (0.0, True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    inside: dict[str, list[float]] = {name: [] for name in variants}
    calls: dict[str, int] = {}
    names = list(variants)
    for r in range(args.rounds + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, n_calls, epochs, in_callback = fit_once(config, dataset, variants[name])
            if r:  # round 0 warms up imports, the SQLite schema and the allocator
                times[name].append(seconds)
                inside[name].append(in_callback)
                calls[name] = n_calls
    base = statistics.median(times["off"])
    print(f"\ntrainer.fit wall time, tracking off vs on ({args.rounds} interleaved rounds, {epochs} epochs)")
    print(
        f"{'variant':<38} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>7} {'paired':>7} {'log_batch calls':>16} "
        f"{'in callback s':>14} {'share':>7}"
    )
    for name in names:
        t = times[name]
        paired = statistics.median(a / b for a, b in zip(t, times["off"]))
        share = statistics.median(i / s for i, s in zip(inside[name], t))
        print(
            f"{name:<38} {statistics.median(t):>9.3f} {min(t):>7.3f} {max(t):>7.3f} "
            f"{statistics.median(t) / base:>6.3f}x {paired:>6.3f}x {calls[name]:>16} "
            f"{statistics.median(inside[name]):>14.3f} {share:>6.1%}"
        )
    print(
        "ratio = median / median of 'off'; paired = median over rounds of the per-round ratio; in callback = "
        "time spent inside MlflowMetrics' hooks during the fit (measured directly), share = that / fit time"
    )
    zero = "on, flush_secs=0"
    if calls.get(zero):
        print(
            f"cost per log_batch call (flush_secs=0: time inside the callback / calls): "
            f"{statistics.median(inside[zero]) / calls[zero] * 1000:.1f} ms"
        )
    for name in names[1:]:
        direct = 1 + statistics.median(i / (s - i) for i, s in zip(inside[name], times[name]))
        print(
            f"{name}: {statistics.median(times[name]) / base:.3f}x (ratio of medians), {direct:.3f}x "
            f"(fit without the time inside the callback vs with it)"
        )

    if args.ab_pairs:
        print(f"\nA/B: {args.ab_pairs} pairs of fits back to back (order alternating), per-pair ratio on/off")
        print(f"{'variant':<38} {'median ratio':>12} {'interquartile':>15}   target <= 1.10x")
        for name in names[1:]:
            ratios = []
            for i in range(args.ab_pairs):
                pair = {}
                for which in ("off", name) if i % 2 == 0 else (name, "off"):
                    pair[which] = fit_once(config, dataset, variants[which])[0]
                ratios.append(pair[name] / pair["off"])
            ratios.sort()
            med = statistics.median(ratios)
            print(
                f"{name:<38} {med:>11.3f}x {ratios[len(ratios) // 4]:>7.3f}-{ratios[3 * len(ratios) // 4]:<7.3f}"
                f"   {'met' if med <= 1.10 else 'NOT met'}"
            )

    if args.workflow_rounds:
        workflow_table(config, args)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
