"""Search quality: best validation loss after 10 / 25 / 50 trials, and the epochs spent, per search method.

One objective for every method: an MLP on digits (hyperflow's split for the seed, ``load_dataset``), trained
by hyperflow's ``setup_training`` + ``Trainer`` for at most 20 epochs at a constant lr; a trial's value is its
best validation cross-entropy (``TrainResult.best_val_loss``); compute is the epochs actually trained,
pruned trials' included. The space (written by this script as YAML and read with
``hyperflow.search.space.load_space``)::

    lr loguniform 1e-4..1e-1, weight_decay loguniform 1e-6..1e-2, width {32,64,128,256}, depth 1..3,
    dropout 0..0.5, batch_size {16,32,64,128}, optimizer {adam, sgd (momentum 0.5..0.99)}

Methods (same seeds; the seed fixes the split, each trial's initialisation and batch order, and the
method's own random state):

- ``grid``: hyperflow's ``grid_points`` of the space (3 points per continuous dimension: 5184 in all) in a
  seeded random order, the first 50 (in its own order the grid would vary only the last dimensions).
- ``random``: hyperopt ``rand.suggest`` on ``to_hyperopt(space)``.
- ``tpe``: hyperflow's TPE as ``SearchRunner`` runs it: ``tpe.suggest`` with ``SearchConfig``'s
  ``n_startup_jobs`` and ``gamma``, ``points_to_evaluate=SearchRunner._preset_points()`` next to a fresh
  ``Trials()`` (as the runner passes them; hyperopt only evaluates such points when ``trials`` is None, so
  they are not evaluated: variant ``presets=first`` puts them into the Trials first), no pruning.
- ``tpe_prune``: the same plus hyperflow's ``PruningCallback(make_pruner(...))`` with ``SearchConfig``'s
  pruner settings; a pruned trial reports the best val_loss it reached, as the search does.
- ``hyperopt_tpe``: ``tpe.suggest`` with hyperopt's own defaults (20 random trials first), no presets.
- ``optuna_tpe``, ``optuna_prune``: Optuna's ``TPESampler(seed=seed)``, alone and with its
  ``MedianPruner()`` (both with their defaults), val_loss reported every epoch.

Variants of hyperflow's method override its settings: ``tpe_prune:startup=5,gamma=0.2,min_epochs=2``; keys
``startup gamma ei prior presets pruner min_epochs rf prune_startup pruned peers`` (``pruned=best`` reports
a pruned trial's best val_loss, ``fail`` reports it as a failed trial, ``median`` as max(own best, median
of finished trials' bests); ``peers=ok`` gives the pruner only the finished trials' curves, as Optuna's
MedianPruner uses, instead of every trial that is not failed).

A method's best after n trials is the lowest value among its first n *finished* (not pruned, not failed)
trials, as hyperflow and Optuna report it. "Reached": the trial at which the method first matched random
search's 50-trial best of the same seed, and the epochs spent until then. No MLflow here: this measures
search quality, not tracking. Results are cached per (method, seed) in bench/results/search/, so runs
can be resumed and methods added one at a time.

    python bench/search.py --seeds 0 1 2 3 4 5 6 7 8 9 --methods random tpe_prune optuna_prune
    python bench/search.py --seeds 0 1 2 3 4 5 6 7 8 9 --methods tpe_prune:startup=5 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import yaml

RESULTS = Path(__file__).resolve().parent / "results" / "search"
SPACE = {
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1},
    "weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2},
    "width": {"type": "choice", "values": [32, 64, 128, 256]},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "choice", "values": [16, 32, 64, 128]},
    "optimizer": {"type": "choice", "options": {"adam": {}, "sgd": {"momentum": {"type": "uniform", "low": 0.5,
                                                                                   "high": 0.99}}}},
}
BASE = {"data": "digits", "epochs": 20, "schedule": "constant", "progress": False, "threads": 1, "log_model": False}
BASES = ("grid", "random", "tpe", "tpe_prune", "hyperopt_tpe", "optuna_tpe", "optuna_prune")
CHECKPOINTS = (10, 25, 50)


# ------------------------------------------------------------------------------------------ objective

def load_bench_space() -> dict[str, Any]:
    from hyperflow.search.space import load_space

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "space.yaml")
        path.write_text(yaml.safe_dump(SPACE, sort_keys=False))
        return load_space(path)


class Objective:
    """Train one point on the seed's split; callbacks may stop it early (pruning)."""

    def __init__(self, seed: int) -> None:
        from hyperflow.config import build_config
        from hyperflow.core.data import load_dataset

        self.seed = seed
        self.base = build_config({**BASE, "seed": seed})
        self.dataset = load_dataset("digits", seed=seed)
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


# ------------------------------------------------------------------------------------------ methods

def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    base, _, rest = spec.partition(":")
    if base not in BASES:
        raise SystemExit(f"unknown method '{base}': choose one of {', '.join(BASES)}")
    opts = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return base, opts


def hyperflow_settings(base: str, opts: dict[str, str]) -> dict[str, Any]:
    from hyperflow.config.search import SearchConfig

    d = SearchConfig()
    known = {"startup": int, "gamma": float, "ei": int, "prior": float, "presets": str, "pruner": str,
             "min_epochs": int, "rf": int, "prune_startup": int, "pruned": str, "peers": str}
    unknown = set(opts) - set(known)
    if unknown:
        raise SystemExit(f"unknown option(s) {sorted(unknown)}: use {' '.join(known)}")
    s = {"startup": d.n_startup_jobs, "gamma": d.gamma, "ei": 24, "prior": 1.0, "presets": str(int(d.seed_presets)),
         "pruner": d.pruner if base == "tpe_prune" else "none", "min_epochs": d.min_epochs,
         "rf": d.reduction_factor, "prune_startup": d.prune_startup_trials, "pruned": "best",
         "peers": "all"}
    s.update({k: known[k](v) for k, v in opts.items()})
    return s


def run_hyperopt(base: str, opts: dict[str, str], seed: int, n_trials: int) -> list[dict[str, Any]]:
    from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, rand, tpe
    from hyperopt.fmin import generate_trials_to_calculate

    from hyperflow.core.pruning import PruningCallback, make_pruner
    from hyperflow.search.space import flatten, to_hyperopt
    from hyperflow.search.runner import SearchRunner

    space = load_bench_space()
    objective = Objective(seed)
    points, s = None, None
    if base == "random":
        algo = rand.suggest
    elif base == "hyperopt_tpe":
        algo = tpe.suggest
    else:
        s = hyperflow_settings(base, opts)
        algo = partial(tpe.suggest, n_startup_jobs=s["startup"], gamma=s["gamma"], n_EI_candidates=s["ei"],
                       prior_weight=s["prior"])
        if s["presets"] != "0":  # the search's own code: the literature presets that fit the space
            runner = SimpleNamespace(search=SimpleNamespace(seed_presets=True), records=[], space=space)
            points = SearchRunner._preset_points(runner) or None
    trials, max_evals = Trials(), n_trials
    if points and s["presets"] == "first":
        trials = generate_trials_to_calculate(points)  # hyperopt evaluates points_to_evaluate only this way
        max_evals -= len(points)  # ... and then runs max_evals trials more

    def fn(sample: dict[str, Any]) -> dict[str, Any]:
        callbacks = []
        pruning = None
        if s is not None and s["pruner"] != "none":
            keep = ("ok",) if s["peers"] == "ok" else ("ok", "pruned")  # the search passes all but failed
            history = [t["history"] for t in objective.trials if t["status"] in keep]
            pruning = PruningCallback(make_pruner(s["pruner"], s["min_epochs"], s["rf"], s["prune_startup"]),
                                      history)
            callbacks.append(pruning)
        record = objective(flatten(sample), callbacks)
        if record["status"] == "failed":
            return {"status": STATUS_FAIL, "failure": record.get("reason", "diverged")}
        if pruning is not None and pruning.reason:
            record["status"] = "pruned"
            if s["pruned"] == "fail":
                return {"status": STATUS_FAIL, "failure": "pruned"}
            if s["pruned"] == "median":
                done = [t["loss"] for t in objective.trials if t["status"] == "ok"]
                if done:
                    return {"status": STATUS_OK, "loss": max(record["loss"], float(np.median(done)))}
        return {"status": STATUS_OK, "loss": record["loss"]}

    fmin(fn, to_hyperopt(space), algo=algo, max_evals=max_evals, trials=trials,
         rstate=np.random.default_rng(seed), points_to_evaluate=points, show_progressbar=False, verbose=False,
         return_argmin=False)
    return objective.trials[:n_trials]


def run_grid(seed: int, n_trials: int) -> list[dict[str, Any]]:
    from hyperflow.search.space import grid_points

    points = grid_points(load_bench_space())
    order = np.random.default_rng(seed).permutation(len(points))[:n_trials]
    objective = Objective(seed)
    for i in order:
        objective(points[int(i)])
    return objective.trials


def run_optuna(base: str, seed: int, n_trials: int) -> list[dict[str, Any]]:
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
        point = {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
                 "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                 "width": trial.suggest_categorical("width", [32, 64, 128, 256]),
                 "depth": trial.suggest_int("depth", 1, 3),
                 "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                 "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
                 "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"])}
        if point["optimizer"] == "sgd":
            point["momentum"] = trial.suggest_float("momentum", 0.5, 0.99)
        report = Report(trial)
        record = objective(point, [report] if base == "optuna_prune" else [])
        if record["status"] == "failed":
            return float("nan")  # Optuna marks the trial FAIL
        if report.pruned:
            record["status"] = "pruned"
            raise optuna.TrialPruned()
        return record["loss"]

    pruner = optuna.pruners.MedianPruner() if base == "optuna_prune" else optuna.pruners.NopPruner()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    study.optimize(fn, n_trials=n_trials)
    return objective.trials


def run_one(task: tuple[str, int, int]) -> tuple[str, int, float]:
    spec, seed, n_trials = task
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    base, opts = parse_method(spec)
    started = time.perf_counter()
    if base == "grid":
        trials = run_grid(seed, n_trials)
    elif base.startswith("optuna"):
        trials = run_optuna(base, seed, n_trials)
    else:
        trials = run_hyperopt(base, opts, seed, n_trials)
    seconds = time.perf_counter() - started
    path = cache_path(spec, seed, n_trials)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"method": spec, "seed": seed, "seconds": seconds, "trials": trials}))
    tmp.replace(path)
    return spec, seed, seconds


def cache_path(spec: str, seed: int, n_trials: int) -> Path:
    safe = spec.replace(":", "__").replace(",", "_").replace("=", "-")
    return RESULTS / f"n{n_trials}" / safe / f"seed{seed}.json"


# ------------------------------------------------------------------------------------------ replay

def replay(trials: list[dict[str, Any]], pruner: str, min_epochs: int, rf: int, startup: int,
           peers: str = "all") -> list[dict[str, Any]]:
    """The trials a pruner would have left of a search whose points do not depend on the losses (random,
    grid): training is deterministic, so a pruned trial's curve is a prefix of the full one. Uses
    hyperflow's ``make_pruner``; exact for random search + pruning."""
    from hyperflow.core.pruning import make_pruner

    p = make_pruner(pruner, min_epochs, rf, startup)
    out: list[dict[str, Any]] = []
    for t in trials:
        if t["status"] == "failed":
            out.append(t)
            continue
        history = [o["history"] for o in out if o["status"] == "ok" or (peers == "all" and o["status"] == "pruned")]
        values: list[float] = []
        status = "ok"
        for epoch, value in enumerate(t["history"], 1):
            values.append(value if math.isfinite(value) else math.inf)
            if p.should_prune(history, epoch, values):  # at the last epoch too, as PruningCallback does
                status = "pruned"
                break
        out.append({**t, "status": status, "epochs": len(values), "history": values,
                    "loss": t["loss"] if status == "ok" else min(values)})
    return out


# ------------------------------------------------------------------------------------------ summary

def best_after(trials: list[dict[str, Any]], n: int) -> float:
    ok = [t["loss"] for t in trials[:n] if t["status"] == "ok"]
    return min(ok) if ok else math.inf


def reached(trials: list[dict[str, Any]], threshold: float) -> tuple[int, int] | None:
    """(trials, epochs) spent until a finished trial first matched ``threshold``; None if never."""
    epochs = 0
    for i, t in enumerate(trials, 1):
        epochs += t["epochs"]
        if t["status"] == "ok" and t["loss"] <= threshold:
            return i, epochs
    return None


def mean_se(values: list[float], digits: int = 4) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values) / math.sqrt(len(values)):.{digits}f}"


def summarise(specs: list[str], seeds: list[int], n_trials: int, ref: str) -> None:
    data = {}
    for spec in specs:
        for seed in seeds:
            path = cache_path(spec, seed, n_trials)
            if path.exists():
                data[spec, seed] = json.loads(path.read_text())["trials"]
    random_best = {seed: best_after(data["random", seed], n_trials) for seed in seeds if ("random", seed) in data}
    cps = [c for c in CHECKPOINTS if c <= n_trials]
    header = " | ".join(f"best after {c}" for c in cps)
    refs = {seed: best_after(data[ref, seed], n_trials) for seed in seeds if (ref, seed) in data}
    print(f"\n| method | seeds | {header} | vs {ref} at {n_trials} (paired) | epochs ({n_trials}) | pruned "
          f"| reached random's {n_trials}-trial best | epochs to reach |")
    print("|---|---|" + "---:|" * (len(cps) + 1) + "---:|---:|---|---:|")
    for spec in specs:
        runs = {seed: data[spec, seed] for seed in seeds if (spec, seed) in data}
        if not runs:
            print(f"| {spec} | 0 | (not run) |")
            continue
        bests = [mean_se([best_after(t, c) for t in runs.values()]) for c in cps]
        epochs = [sum(x["epochs"] for x in t) for t in runs.values()]
        pruned = statistics.mean(sum(x["status"] == "pruned" for x in t) for t in runs.values())
        hits = [reached(t, random_best[s]) for s, t in runs.items() if s in random_best]
        got = [h for h in hits if h is not None]
        reach = f"{len(got)}/{len(hits)}" if hits else "-"
        to_reach = mean_se([float(h[1]) for h in got], 0) if got else "-"
        diffs = [best_after(t, n_trials) - refs[s] for s, t in runs.items() if s in refs]
        paired = ("-" if spec == ref or len(diffs) < 2 else
                  f"{statistics.mean(diffs):+.4f} ± {statistics.stdev(diffs) / math.sqrt(len(diffs)):.4f}")
        print(f"| {spec} | {len(runs)} | {' | '.join(bests)} | {paired} | {statistics.mean(epochs):.0f} | {pruned:.1f} | "
              f"{reach} | {to_reach} |")
    if random_best:
        print(f"\nrandom's 50-trial best per seed: mean {statistics.mean(random_best.values()):.4f}, "
              f"median {statistics.median(random_best.values()):.4f}")


REPLAYS = [("median", 3, 3, 4, "all"), ("median", 1, 3, 4, "all"), ("median", 2, 3, 4, "all"),
           ("median", 1, 3, 3, "all"), ("median", 5, 3, 4, "all"), ("median", 8, 3, 4, "all"),
           ("median", 3, 3, 4, "ok"), ("median", 1, 3, 4, "ok"), ("median", 5, 3, 3, "ok"),
           ("asha", 2, 3, 0, "all"), ("asha", 4, 3, 0, "all"), ("asha", 5, 3, 0, "all"), ("asha", 4, 2, 0, "all")]


def replay_table(seeds: list[int], n_trials: int) -> None:
    """Random search + each pruner of REPLAYS, replayed on random search's cached full curves."""
    runs = {s: json.loads(cache_path("random", s, n_trials).read_text())["trials"] for s in seeds
            if cache_path("random", s, n_trials).exists()}
    if not runs:
        print("no cached random-search runs to replay: run --methods random first")
        return
    print(f"\nrandom search + pruner, replayed on random's full curves ({len(runs)} seeds, {n_trials} trials)")
    print(f"| pruner | min_epochs | rf / startup | peers | best vs no pruning (paired) | worst seed | epochs "
          f"| pruned | reached random's best | epochs to reach |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|---:|")
    for pruner, min_epochs, rf, startup, peers in REPLAYS:
        diffs, epochs, pruned, hits = [], [], [], []
        for trials in runs.values():
            full = best_after(trials, n_trials)
            r = replay(trials, pruner, min_epochs, rf, startup, peers)
            diffs.append(best_after(r, n_trials) - full)
            epochs.append(sum(t["epochs"] for t in r))
            pruned.append(sum(t["status"] == "pruned" for t in r))
            hits.append(reached(r, full))
        got = [h[1] for h in hits if h is not None]
        knob = f"rf={rf}" if pruner == "asha" else f"startup={startup}"
        print(f"| {pruner} | {min_epochs} | {knob} | {peers if pruner == 'median' else '-'} | "
              f"{mean_se(diffs)} | {max(diffs):.4f} | {statistics.mean(epochs):.0f} | {statistics.mean(pruned):.1f} | "
              f"{len(got)}/{len(hits)} | {mean_se([float(g) for g in got], 0)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(BASES), help="methods and variants (see above)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2, help="processes, one (method, seed) each (default 2)")
    p.add_argument("--summary-only", action="store_true", help="print the table from the cache, run nothing")
    p.add_argument("--ref", default="optuna_prune", help="method the paired differences are taken against")
    p.add_argument("--replay", action="store_true", help="also replay pruners on random search's cached curves")
    args = p.parse_args()
    for spec in args.methods:
        parse_method(spec)
    print(f"python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__} · python {platform.python_version()} · {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} · threads=1 · {args.jobs} processes")
    tasks = [(spec, seed, args.trials) for spec in args.methods for seed in args.seeds
             if not cache_path(spec, seed, args.trials).exists()]
    if not args.summary_only and tasks:
        print(f"{len(tasks)} (method, seed) runs to do; cached results in {RESULTS}")
        with get_context("fork").Pool(args.jobs, maxtasksperchild=1) as pool:
            for spec, seed, seconds in pool.imap_unordered(run_one, tasks):
                print(f"  done {spec} seed {seed}: {seconds:.0f} s", flush=True)
    summarise(args.methods, args.seeds, args.trials, args.ref)
    if args.replay:
        replay_table(args.seeds, args.trials)


if __name__ == "__main__":
    main()
