"""Cost of MLflow tracking: the same training with the metrics callback on and off.

"off" is hyperflow.training.setup_training(config) + trainer.fit; "on" is the same plus the tracking
callback hyperflow.tracking.MlflowMetrics(run_id, flush_secs), inside an MLflow run on a temporary
SQLite store. Only trainer.fit is timed (it includes the callback's final flush in on_train_end);
setup, run start and run end are outside the timed region. The three variants (off, flush_secs=1.0,
flush_secs=0) are interleaved in rotating order after a warm-up round.

A second table is the one-off cost of the whole hyperflow.workflows.train.train(config) (run, params,
dataset input, metrics, learning-curve figure, test metrics, model logging) against setup_training +
fit without MLflow, with a breakdown by step. Information only, no target.

    python bench/tracking.py                     # default config (digits, 30 epochs), 5 rounds
    python bench/tracking.py --rounds 7 --workflow-rounds 3 epochs=30
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import torch  # noqa: E402

import hyperflow.tracking as tracking  # noqa: E402
import hyperflow.workflows.train as workflow  # noqa: E402
from hyperflow.config import TrainConfig, build_config  # noqa: E402
from hyperflow.training import load_data, setup_training  # noqa: E402


def fit_once(config: TrainConfig, dataset: Any, flush_secs: float | None) -> tuple[float, int, int]:
    """One fit; returns (seconds, log_batch calls, epochs). flush_secs=None: tracking off."""
    setup = setup_training(config, dataset=dataset)
    calls = [0]
    run = None
    if flush_secs is not None:
        run = mlflow.start_run()
        callback = tracking.MlflowMetrics(run.info.run_id, flush_secs)
        original = callback.client.log_batch

        def counted(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            return original(*a, **k)
        callback.client.log_batch = counted  # type: ignore[method-assign]
        setup.trainer.callbacks.append(callback)
    try:
        started = time.perf_counter()
        result = setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
        seconds = time.perf_counter() - started
    finally:
        if run is not None:
            mlflow.end_run()
    return seconds, calls[0], result.epochs_run


class StepTimer:
    """Wraps module attributes so that the seconds spent in each are summed per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

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
    result = setup.trainer.fit(setup.dataset.X_train, setup.dataset.y_train, setup.dataset.X_val,
                               setup.dataset.y_val)
    return time.perf_counter() - started, result.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("settings", nargs="*", help="hyperflow settings key=value (default: the default config)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after a warm-up round (default 5)")
    p.add_argument("--workflow-rounds", type=int, default=3, help="rounds of the whole-workflow table (0 = skip)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    overrides = dict(s.split("=", 1) for s in args.settings)
    config = build_config({"progress": False, **overrides})
    tmp = tempfile.mkdtemp(prefix="hyperflow-bench-")
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-tracking")
    dataset = load_data(config)
    print(f"torch {torch.__version__} · mlflow {mlflow.__version__} · python {platform.python_version()} · "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"config: data={config.data} model={config.model} epochs={config.epochs} batch_size={config.batch_size} "
          f"schedule={config.schedule} threads={config.threads} · store {uri}")

    variants: dict[str, float | None] = {"off": None, "on, flush_secs=1.0 (default)": 1.0, "on, flush_secs=0": 0.0}
    times: dict[str, list[float]] = {name: [] for name in variants}
    calls: dict[str, int] = {}
    names = list(variants)
    for r in range(args.rounds + 1):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds, n_calls, epochs = fit_once(config, dataset, variants[name])
            if r:  # round 0 warms up imports, the SQLite schema and the allocator
                times[name].append(seconds)
                calls[name] = n_calls
    base = statistics.median(times["off"])
    print(f"\ntrainer.fit wall time, tracking off vs on ({args.rounds} interleaved rounds, {epochs} epochs)")
    print(f"{'variant':<32} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>7} {'paired':>7} {'log_batch calls':>16}")
    for name in names:
        t = times[name]
        paired = statistics.median(a / b for a, b in zip(t, times["off"]))
        print(f"{name:<32} {statistics.median(t):>9.3f} {min(t):>7.3f} {max(t):>7.3f} "
              f"{statistics.median(t) / base:>6.3f}x {paired:>6.3f}x {calls[name]:>16}")
    print("ratio = median / median of 'off'; paired = median over rounds of the per-round ratio")
    zero = "on, flush_secs=0"
    if calls.get(zero):
        print(f"cost per log_batch call (flush_secs=0: extra time / calls): "
              f"{(statistics.median(times[zero]) - base) / calls[zero] * 1000:.1f} ms")
    for name in names[1:]:
        ratio = statistics.median(times[name]) / base
        print(f"target {name} <= 1.10x off: {ratio:.3f}x -> {'met' if ratio <= 1.10 else 'NOT met'}")

    if args.workflow_rounds:
        print(f"\nwhole workflow: hyperflow.workflows.train.train(config) vs setup_training + fit without MLflow "
              f"(median of {args.workflow_rounds} rounds after a warm-up; information only)")
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
        med = statistics.median(totals)
        print(f"{'':<40} {'median s':>9}")
        print(f"{'setup_training + fit, no MLflow':<40} {statistics.median(plain):>9.3f}   "
              f"(of which fit {statistics.median(plain_fit):.3f})")
        print(f"{'train(config), whole workflow':<40} {med:>9.3f}   "
              f"({med / statistics.median(plain):.2f}x; +{med - statistics.median(plain):.3f} s)")
        print("breakdown of train(config):")
        accounted = 0.0
        for k, v in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
            accounted += statistics.median(v)
            print(f"  {k:<38} {statistics.median(v):>9.3f}")
        print(f"  {'other (tags, set_tag, test evaluate)':<38} {med - accounted:>9.3f}")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
