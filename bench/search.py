"""Search quality: the best validation loss a search finds in 50 trials, and the epochs it spends, per method.

One objective for every method: an MLP on digits, hyperflow's split for the seed (``load_data``), each trial
trained by hyperflow's ``setup_training`` + ``Trainer`` for at most 20 epochs at a constant lr, threads=1; a
trial's value is its best validation cross-entropy; compute is the epochs actually trained, pruned trials'
included. The space (7 dimensions, one conditional)::

    lr loguniform 1e-4..1e-1, weight_decay loguniform 1e-6..1e-2, width {32,64,128,256}, depth 1..3,
    dropout 0..0.5, batch_size {16,32,64,128}, optimizer {adam, sgd (momentum 0.5..0.99)}

Methods (same seeds; the seed fixes the split, each trial's initialisation and batch order, and the
method's own random state):

- ``default``: what ``hyperflow search`` ships: the search workflow with ``build_search_config`` defaults, only
  the space, ``max_evals=50``, ``register=false`` and ``parallelism=1`` set (quality numbers must not depend on
  the order in which parallel trials finish; variant ``default:parallelism=2`` measures that), tracked in a
  temporary sqlite store per search.
- ``tpe``, ``random``: the same workflow with ``strategy=tpe`` (hyperopt's TPE with hyperflow's defaults:
  ``n_startup_jobs=8``, ``gamma=0.25``, the shipped pruner) and ``strategy=random`` (hyperopt's rand,
  ``pruner=none``).
- ``optuna``, ``optuna_median``: Optuna 5 ``TPESampler(seed=seed)`` with its defaults (multivariate, constant
  liar), alone and with ``MedianPruner()``, val_loss reported each epoch, on the same data and ``Trainer``.

Variants set any search setting: ``default:pruner=none``, ``tpe:pruner=none,n_startup_jobs=20``.

A method's best is the lowest loss among its *finished* (not pruned, not failed) trials, as hyperflow and
Optuna report it. "Reached": the trial at which the method first matched random search's 50-trial best *of
the same seed*, and the epochs spent until then. Results are cached per (method, seed) in
bench/results/search/ under a key that hashes the settings and the code the method runs (this script's
objective and method functions; for hyperflow's methods hyperflow/{search,config,core}/*.py, for Optuna's
config/ and core/ but the search settings and pruners; the package is the one imported, so
``PYTHONPATH=snapshot/src`` measures a snapshot): a stale entry is recomputed, never printed.

    python bench/search.py --methods random tpe optuna optuna_median default --seeds 0 1 2 3 4 5 6 7 8 9
    python bench/search.py --methods default default:pruner=none --seeds 0 1 2 --jobs 2 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import yaml

import hyperflow

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "search"
SPACE = {
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1},
    "weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2},
    "width": {"type": "choice", "values": [32, 64, 128, 256]},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "choice", "values": [16, 32, 64, 128]},
    "optimizer": {
        "type": "choice",
        "options": {"adam": {}, "sgd": {"momentum": {"type": "uniform", "low": 0.5, "high": 0.99}}},
    },
}
BASE = {"data": "digits", "epochs": 20, "schedule": "constant", "progress": False, "threads": 1, "log_model": False}
METHODS = {  # method -> search settings over the shipped defaults (hyperflow's) or Optuna's pruner
    "default": {},
    "tpe": {"strategy": "tpe"},
    "random": {"strategy": "random", "pruner": "none"},
    "optuna": {"pruner": "none"},
    "optuna_median": {"pruner": "median"},
}
PACKAGE = Path(hyperflow.__file__).resolve().parent  # the code that runs (PYTHONPATH may name a snapshot)
CODE = {"hyperflow": ("search", "config", "core"), "optuna": ("config", "core")}
NOT_SEARCH_QUALITY = ("core/plots.py", "core/search_plots.py")  # its changes do not change what a search finds
NOT_OPTUNA = ("config/search.py", "core/pruning.py")  # the search's settings and pruners: Optuna has its own


# ------------------------------------------------------------------------------------------ methods


def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    base, _, rest = spec.partition(":")
    if base not in METHODS:
        raise SystemExit(f"unknown method '{base}': choose one of {', '.join(METHODS)}")
    opts = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return base, {**METHODS[base], **opts}


def run_search(settings: dict[str, str], seed: int, n_trials: int) -> list[dict[str, Any]]:
    """The shipped search: the search workflow with the defaults but ``settings``, tracked in a temporary sqlite."""
    import mlflow

    from hyperflow.config import build_config
    from hyperflow.config.search import build_search_config
    from hyperflow.workflows.search import search as hyperflow_search

    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp, "space.yaml")
        space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        search = build_search_config(
            {"space": str(space), "max_evals": n_trials, "register": False, "parallelism": 1, **settings}
        )
        outcome = hyperflow_search(search, build_config({**BASE, "seed": seed}))
    return [
        {"params": r.params, "status": r.status, "loss": r.loss, "epochs": r.epochs, "history": r.history}
        for r in sorted(outcome.records, key=lambda r: r.number)
    ]


class Objective:
    """One Optuna trial on the search's data and ``Trainer`` (a trial as ``hyperflow.workflows.search_trial`` trains it,
    without MLflow); callbacks may stop it early."""

    def __init__(self, seed: int) -> None:
        from hyperflow.config import build_config
        from hyperflow.core.assembly import load_data

        self.base = build_config({**BASE, "seed": seed})
        self.dataset = load_data(self.base)
        self.trials: list[dict[str, Any]] = []

    def __call__(self, point: dict[str, Any], callbacks: list = ()) -> dict[str, Any]:
        from hyperflow.core.assembly import setup_training

        d = self.dataset
        record = {"params": point, "status": "failed", "loss": None, "epochs": 0, "history": []}
        try:
            setup = setup_training(self.base.replace(**point), dataset=d)
            setup.trainer.callbacks += list(callbacks)
            result = setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
            record["epochs"] = result.epochs_run
            record["history"] = [h["val_loss"] for h in result.history]
            if result.status != "diverged" and result.best_epoch > 0:
                record["status"], record["loss"] = "ok", result.best_val_loss
        except (RuntimeError, FloatingPointError, ValueError) as exc:
            record["reason"] = f"{type(exc).__name__}: {exc}"[:200]
        self.trials.append(record)
        return record


def run_optuna(settings: dict[str, str], seed: int, n_trials: int) -> list[dict[str, Any]]:
    """Optuna 5's defaults: ``TPESampler(seed=seed)``, with ``MedianPruner()`` or none."""
    import optuna

    from hyperflow.core.trainer import Callback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = Objective(seed)

    class Report(Callback):
        def __init__(self, trial: optuna.Trial) -> None:
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
            value = metrics["val_loss"]
            self.trial.report(value if math.isfinite(value) else math.inf, epoch)
            if self.trial.should_prune():
                self.pruned = trainer.stop_requested = True

    def fn(trial: optuna.Trial) -> float:
        point = {
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "width": trial.suggest_categorical("width", [32, 64, 128, 256]),
            "depth": trial.suggest_int("depth", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
            "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
        }
        if point["optimizer"] == "sgd":
            point["momentum"] = trial.suggest_float("momentum", 0.5, 0.99)
        report = Report(trial)
        record = objective(point, [report] if settings["pruner"] == "median" else [])
        if record["status"] == "failed":
            return float("nan")  # Optuna marks the trial FAIL
        if report.pruned:
            record["status"] = "pruned"
            raise optuna.TrialPruned()
        return record["loss"]

    pruner = optuna.pruners.MedianPruner() if settings["pruner"] == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    study.optimize(fn, n_trials=n_trials)
    return objective.trials


# ------------------------------------------------------------------------------------------ cache


def code_key(spec: str, n_trials: int) -> str:
    """A hash of the method's settings and of the code it runs: a change to either makes a new key."""
    base, settings = parse_method(spec)
    kind = "optuna" if base.startswith("optuna") else "hyperflow"
    runner = [run_optuna, Objective] if kind == "optuna" else [run_search]
    h = hashlib.sha256(json.dumps([spec, settings, n_trials, SPACE, BASE], sort_keys=True).encode())
    for obj in runner:
        h.update(inspect.getsource(obj).encode())
    skip = set(NOT_SEARCH_QUALITY) | (set(NOT_OPTUNA) if kind == "optuna" else set())
    for folder in CODE[kind]:
        for path in sorted((PACKAGE / folder).glob("*.py")):
            if path.relative_to(PACKAGE).as_posix() not in skip:
                h.update(path.relative_to(PACKAGE).as_posix().encode() + path.read_bytes())
    if kind == "optuna":
        import optuna

        h.update(optuna.__version__.encode())
    return h.hexdigest()[:16]


def default_strategy() -> str:
    from hyperflow.config.search import SearchConfig

    return SearchConfig().strategy


def cache_path(spec: str, seed: int, n_trials: int) -> Path:
    safe = spec.replace(":", "__").replace(",", "_").replace("=", "-")
    return RESULTS / f"n{n_trials}" / safe / f"seed{seed}.json"


def cached(spec: str, seed: int, n_trials: int, key: str) -> list[dict[str, Any]] | None:
    """The cached trials of (spec, seed) when their key is ``key``; None when missing or stale."""
    path = cache_path(spec, seed, n_trials)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data["trials"] if data.get("key") == key else None


def run_one(task: tuple[str, int, int, str]) -> tuple[str, int, float]:
    spec, seed, n_trials, key = task
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    base, settings = parse_method(spec)
    started = time.perf_counter()
    trials = (run_optuna if base.startswith("optuna") else run_search)(settings, seed, n_trials)
    seconds = time.perf_counter() - started
    path = cache_path(spec, seed, n_trials)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"method": spec, "seed": seed, "key": key, "seconds": seconds, "trials": trials}))
    tmp.replace(path)
    return spec, seed, seconds


def run_all(tasks: list[tuple[str, int, int, str]], jobs: int) -> None:
    """Each task in a fresh process, ``jobs`` at a time; not a Pool: its daemonic workers could not start the
    search's own worker processes (parallelism > 1)."""
    ctx, running = get_context("spawn"), []
    for task in [*tasks, None]:
        while running and (len(running) >= jobs or task is None):
            for proc, (spec, seed, *_), started in list(running):
                proc.join(1)
                if proc.exitcode is not None:
                    running.remove((proc, (spec, seed), started))
                    print(
                        f"  {'done' if proc.exitcode == 0 else 'FAILED'} {spec} seed {seed}: "
                        f"{time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
        if task is not None:
            proc = ctx.Process(target=run_one, args=(task,))
            proc.start()
            running.append((proc, task[:2], time.perf_counter()))


# ------------------------------------------------------------------------------------------ summary


def best_of(trials: list[dict[str, Any]], n: int | None = None) -> float:
    ok = [t["loss"] for t in trials[:n] if t["status"] == "ok"]
    return min(ok) if ok else math.inf


def reached(trials: list[dict[str, Any]], threshold: float) -> tuple[int, int] | None:
    """(trials, epochs) spent until a finished trial first matched ``threshold``; None if never."""
    epochs = 0
    for i, t in enumerate(trials, 1):
        epochs += t["epochs"]
        if t["status"] == "ok" and t["loss"] <= threshold + 1e-12:
            return i, epochs
    return None


def mean_se(values: list[float], digits: int = 4, sign: str = "") -> str:
    if not values:
        return "-"
    if len(values) < 2:
        return f"{values[0]:{sign}.{digits}f}"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.mean(values):{sign}.{digits}f} ± {se:.{digits}f}"


def summarise(data: dict[tuple[str, int], list], specs: list[str], seeds: list[int], ref: str) -> None:
    random_best = {s: best_of(data["random", s]) for s in seeds if ("random", s) in data}
    refs = {s: best_of(data[ref, s]) for s in seeds if (ref, s) in data}
    print(
        f"\n| method | seeds | best after 10 | best after 25 | best (50) | vs {ref} (paired) | epochs | pruned "
        f"| reached random's best | epochs to reach |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for spec in specs:
        runs = {s: data[spec, s] for s in seeds if (spec, s) in data}
        if not runs:
            print(f"| {spec} | 0 | (not run) |")
            continue
        bests = [mean_se([best_of(t, c) for t in runs.values()]) for c in (10, 25, None)]
        epochs = [float(sum(x["epochs"] for x in t)) for t in runs.values()]
        pruned = statistics.mean(sum(x["status"] == "pruned" for x in t) for t in runs.values())
        hits = [reached(t, random_best[s]) for s, t in runs.items() if s in random_best]
        got = [h for h in hits if h is not None]
        diffs = [best_of(t) - refs[s] for s, t in runs.items() if s in refs]
        paired = "-" if spec == ref else mean_se(diffs, sign="+")
        print(
            f"| {spec} | {len(runs)} | {' | '.join(bests)} | {paired} | {mean_se(epochs, 0)} | {pruned:.1f} | "
            f"{len(got)}/{len(hits)} | {mean_se([float(h[1]) for h in got], 0)} |"
        )
    print("\nper seed: best (epochs)")
    print("| method | " + " | ".join(str(s) for s in seeds) + " |")
    print("|---|" + "---:|" * len(seeds))
    for spec in specs:
        cells = [
            f"{best_of(data[spec, s]):.4f} ({sum(x['epochs'] for x in data[spec, s])})" if (spec, s) in data else "-"
            for s in seeds
        ]
        print(f"| {spec} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="methods and variants (see above)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--jobs", type=int, default=1, help="processes, one (method, seed) each (default 1)")
    p.add_argument("--summary-only", action="store_true", help="print the table from the cache, run nothing")
    p.add_argument("--ref", default="optuna", help="method the paired differences are taken against")
    p.add_argument("--json", type=Path, help='write {method: {"best": [per seed], "epochs": [per seed]}} here')
    args = p.parse_args()
    keys = {spec: code_key(spec, args.trials) for spec in dict.fromkeys([*args.methods, "random", args.ref])}
    print(f"python {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__} · python {platform.python_version()} · {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} · threads=1 · {args.jobs} processes"
    )
    tasks = [
        (spec, seed, args.trials, keys[spec])
        for spec in args.methods
        for seed in args.seeds
        if cached(spec, seed, args.trials, keys[spec]) is None
    ]
    if not args.summary_only and tasks:
        print(f"{len(tasks)} (method, seed) runs to do; cached results in {RESULTS}", flush=True)
        run_all(tasks, args.jobs)
    data = {
        (spec, s): t
        for spec, key in keys.items()
        for s in args.seeds
        if (t := cached(spec, s, args.trials, key)) is not None
    }
    stale = [f"{spec} seed {s}" for spec in args.methods for s in args.seeds if (spec, s) not in data]
    if stale:
        print(f"missing or stale (not shown): {', '.join(stale)}")
    summarise(data, args.methods, args.seeds, args.ref)
    if args.json:
        out = {
            spec: {
                "best": [best_of(data[spec, s]) for s in args.seeds if (spec, s) in data],
                "epochs": [sum(x["epochs"] for x in data[spec, s]) for s in args.seeds if (spec, s) in data],
            }
            for spec in args.methods
        }
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
