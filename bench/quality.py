"""Test-set quality of hyperflow's defaults (and of tuned settings where a default misses its target).

Each case is a set of ``hyperflow train`` settings; for every seed it runs
hyperflow.config.build_config(settings) + hyperflow.core.assembly.setup_training + trainer.fit +
trainer.evaluate(X_test, y_test, prefix="test_"), without MLflow. The seed changes the data split as
well as the initialisation and batch order, so the spread across seeds includes split noise. For the
tabular sets a scikit-learn linear model fitted on the same preprocessed split (RidgeCV / logistic
regression) is shown as a reference for how hard each split is.

    python bench/quality.py                                # all cases, seeds 42 0 1
    python bench/quality.py --cases diabetes diabetes_tuned --seeds 0 1 2 3 4 5 6 7 8 9
    python bench/quality.py --cli                          # also time `hyperflow train` end to end (digits)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from hyperflow.config import build_config
from hyperflow.core.assembly import setup_training


@dataclass
class Case:
    settings: dict[str, str]
    metric: str
    target: float
    max_seconds: float | None = None  # a training wall-time target, if the case has one


CASES: dict[str, Case] = {
    "digits": Case({"data": "digits"}, "test_accuracy", 0.97, max_seconds=20.0),
    "digits_smoothed": Case({"data": "digits", "label_smoothing": "0.1"}, "test_accuracy", 0.97, max_seconds=20.0),
    "diabetes": Case({"data": "diabetes"}, "test_r2", 0.45),
    "diabetes_tuned": Case({"data": "diabetes", "width": "64", "dropout": "0.5"}, "test_r2", 0.45),
    "breast_cancer": Case({"data": "breast_cancer"}, "test_accuracy", 0.95),
    "breast_cancer_tuned": Case({"data": "breast_cancer", "label_smoothing": "0.1"}, "test_accuracy", 0.95),
    "shapes": Case({"data": "shapes", "model": "unet"}, "test_dice", 0.85),
    "shapes_fast": Case(
        {"data": "shapes", "model": "unet", "channels": "8", "epochs": "8", "lr": "0.01"}, "test_dice", 0.85
    ),
}


def linear_reference(dataset) -> float | None:
    """Test score of a linear scikit-learn model on the same preprocessed split (tables only)."""
    if dataset.task == "segmentation":
        return None
    from sklearn.linear_model import LogisticRegression, RidgeCV

    X_train, X_test = dataset.X_train.flatten(1).numpy(), dataset.X_test.flatten(1).numpy()
    y_train, y_test = dataset.y_train.numpy(), dataset.y_test.numpy()
    if dataset.task == "regression":
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X_train, y_train)
        pred = model.predict(X_test)
        return float(1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())
    model = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    return float(model.score(X_test, y_test))


def run_case(case: Case, seed: int) -> dict[str, float]:
    config = build_config({**case.settings, "seed": seed, "progress": False})
    started = time.perf_counter()
    setup = setup_training(config)
    ds = setup.dataset
    result = setup.trainer.fit(ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    total = time.perf_counter() - started
    test = setup.trainer.evaluate(ds.X_test, ds.y_test, prefix="test_")
    reference = linear_reference(ds)
    return {
        "score": test[case.metric],
        "fit": result.seconds,
        "total": total,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "reference": float("nan") if reference is None else reference,
    }


# A candidate change measured side by side (not hyperflow's code): after main() returns, run the atexit
# handlers and leave with os._exit, skipping the interpreter's teardown of torch/mlflow/sklearn modules.
FAST_EXIT = (
    "import atexit, os, sys; from hyperflow.cli import main; code = main(sys.argv[1:]); "
    "sys.stdout.flush(); sys.stderr.flush(); atexit._run_exitfuncs(); os._exit(code)"
)


def time_cli(settings: list[str], plan: list[str]) -> list[tuple[str, float, str]]:
    """Wall time of `hyperflow train ...` in a new process, one run per entry of ``plan`` ("normal" or
    "fast-exit"), all on one temporary SQLite store (the first run also creates the store's tables)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        for kind in plan:
            prefix = ["-m", "hyperflow"] if kind == "normal" else ["-c", FAST_EXIT]
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, *prefix, "train", *settings, "progress=false"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
            first = (proc.stdout.strip().splitlines() or [""])[0]
            out.append(
                (
                    kind,
                    seconds,
                    first if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}",
                )
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 0, 1], help="default: 42 (the default seed) 0 1")
    p.add_argument("--cli", action="store_true", help="also time `hyperflow train` end to end on digits")
    p.add_argument(
        "--cli-pairs",
        type=int,
        default=3,
        help="with --cli: pairs of normal / fast-exit runs on the existing store (default 3)",
    )
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    print(
        f"torch {torch.__version__} · python {platform.python_version()} · {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} · seeds {' '.join(map(str, args.seeds))}"
    )

    rows = []
    for name in args.cases:
        case = CASES[name]
        runs = [run_case(case, seed) for seed in args.seeds]
        scores = [r["score"] for r in runs]
        refs = [r["reference"] for r in runs]
        rows.append((name, case, runs))
        print(f"\n{name}: hyperflow train {' '.join(f'{k}={v}' for k, v in case.settings.items())}")
        print(
            f"  {'seed':>5} {case.metric:>14} {'linear ref':>11} {'fit s':>7} "
            f"{'setup+fit s':>12} {'best/run epochs':>16}"
        )
        for seed, r in zip(args.seeds, runs):
            ref = "-" if np.isnan(r["reference"]) else f"{r['reference']:.4f}"
            print(
                f"  {seed:>5} {r['score']:>14.4f} {ref:>11} {r['fit']:>7.2f} {r['total']:>12.2f} "
                f"{r['best_epoch']:>8}/{r['epochs']:<7}"
            )
        ref_mean = "-" if all(np.isnan(refs)) else f"{statistics.mean(refs):.4f}"
        print(
            f"  {'mean':>5} {statistics.mean(scores):>14.4f} {ref_mean:>11} "
            f"{statistics.mean(r['fit'] for r in runs):>7.2f} {statistics.mean(r['total'] for r in runs):>12.2f}"
        )
        print(f"  {'min':>5} {min(scores):>14.4f}")

    print(f"\nsummary (seeds {' '.join(map(str, args.seeds))})")
    print(
        f"{'case':<20} {'metric':<14} {'mean':>7} {'min':>7} {'target':>8} {'mean met':>9} {'min met':>8} "
        f"{'fit s mean/max':>15}"
    )
    for name, case, runs in rows:
        scores = [r["score"] for r in runs]
        fits = [r["fit"] for r in runs]
        print(
            f"{name:<20} {case.metric:<14} {statistics.mean(scores):>7.4f} {min(scores):>7.4f} "
            f"{'>= ' + str(case.target):>8} {'yes' if statistics.mean(scores) >= case.target else 'NO':>9} "
            f"{'yes' if min(scores) >= case.target else 'NO':>8} {statistics.mean(fits):>7.2f}/{max(fits):<7.2f}"
        )
        if case.max_seconds is not None:
            worst = max(r["total"] for r in runs)
            print(
                f"{'':<20} training wall time (setup+fit, worst seed) {worst:.2f} s, target <= {case.max_seconds} s: "
                f"{'met' if worst <= case.max_seconds else 'NOT met'}"
            )

    if args.cli:
        settings = [f"{k}={v}" for k, v in CASES["digits"].settings.items()]
        print(
            f"\n`hyperflow train {' '.join(settings)}` end to end (new process: imports, data, fit, MLflow run, "
            f"model logging; temporary SQLite store)"
        )
        plan = ["normal"] + ["normal", "fast-exit"] * args.cli_pairs
        runs = time_cli(settings, plan)
        for i, (kind, seconds, line) in enumerate(runs):
            label = "new store" if i == 0 else "existing store"
            print(f"  run {i + 1} ({label}, {kind}): {seconds:.2f} s   {line}")
        normal = [s for k, s, _ in runs[1:] if k == "normal"]
        fast = [s for k, s, _ in runs[1:] if k == "fast-exit"]
        if fast:
            print(
                f"  existing store, median: normal {statistics.median(normal):.2f} s, candidate fast exit "
                f"(atexit handlers, then os._exit) {statistics.median(fast):.2f} s"
            )
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-W", "ignore", "-c", "import hyperflow.workflows.train, hyperflow.cli"],
            check=True,
            capture_output=True,
        )
        print(
            f"  imports alone, a separate process (python -c 'import hyperflow.workflows.train'): "
            f"{time.perf_counter() - started:.2f} s"
        )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
