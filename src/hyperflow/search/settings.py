"""Search settings: a frozen dataclass like TrainConfig; every other key configures the trials."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from hyperflow.config import _f, coerce
from hyperflow.errors import UsageError

STRATEGIES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "asha")
BACKENDS = ("local", "spark")


@dataclass(frozen=True)
class SearchConfig:
    space: str | None = _f(None, "YAML search space (default: the one shipped for the task)")
    strategy: str = _f("tpe", "grid | random | tpe")
    max_evals: int = _f(30, "trials in all, those of a resumed search included (grid: at most the grid size)")
    timeout: float = _f(0.0, "wall-clock seconds for the whole search, the trial in flight included (0 = none)")
    early_stop: int = _f(0, "stop after this many trials without a better val_loss (0 = off)")
    loss_threshold: float | None = _f(None, "stop as soon as a trial's best val_loss is at or below this")
    n_startup_jobs: int = _f(8, "tpe: random trials before the model takes over (hyperopt's 20 suits big budgets)")
    gamma: float = _f(0.25, "tpe: how many trials count as good: ceil(gamma * sqrt(trials)), hyperopt's rule")
    pruner: str = _f("median", "none | median (median stopping rule) | asha (successive halving)")
    min_epochs: int = _f(5, "pruning: epochs every trial trains before it can be pruned (asha: first rung)")
    reduction_factor: int = _f(3, "asha: keep the best 1/reduction_factor of trials at each rung")
    prune_startup_trials: int = _f(3, "median: finished trials needed before pruning starts")
    max_consecutive_failures: int = _f(5, "stop the search after this many failed trials in a row")
    lr_bounds: str = _f("none", "auto = run the LR range test once and search lr (and max_lr) within its range")
    seed_presets: bool = _f(True, "evaluate the literature presets that fit the space first")
    resume: str | None = _f(None, "search run id to resume (rebuilds the trials from MLflow)")
    refit: bool = _f(False, "refit the best settings on train+val before logging the model")
    model_name: str | None = _f(None, "registered model name for the best model (default hyperflow-<data>)")
    register: bool = _f(True, "register the best model and give it alias 'challenger'")
    backend: str = _f("local", "local (trials one after another in this process) | spark (hyperopt SparkTrials)")
    parallelism: int = _f(2, "spark: trials at once (each gets its share of the cores as torch threads)")
    spark_master: str | None = _f(None, "spark: master URL (default local[parallelism])")


SEARCH_KEYS = {f.name for f in dataclasses.fields(SearchConfig)}


def build_search_config(values: Mapping[str, Any]) -> SearchConfig:
    coerced = {k: coerce(k, v, SearchConfig) for k, v in values.items()}
    c = SearchConfig(**coerced)
    for key, allowed in (("strategy", STRATEGIES), ("pruner", PRUNERS), ("lr_bounds", ("none", "auto")),
                         ("backend", BACKENDS)):
        if getattr(c, key) not in allowed:
            raise UsageError(f"unknown {key} '{getattr(c, key)}': choose one of {', '.join(allowed)}")
    for key in ("max_evals", "min_epochs", "max_consecutive_failures", "parallelism"):
        if getattr(c, key) < 1:
            raise UsageError(f"{key} must be at least 1, got {getattr(c, key)}")
    for key in ("timeout", "early_stop", "n_startup_jobs", "prune_startup_trials"):
        if getattr(c, key) < 0:
            raise UsageError(f"{key} must be zero or positive, got {getattr(c, key)}")
    if c.reduction_factor < 2:
        raise UsageError(f"reduction_factor must be at least 2, got {c.reduction_factor}")
    if not 0 < c.gamma < 1:
        raise UsageError(f"gamma must be between 0 and 1, got {c.gamma}")
    if c.backend == "spark" and c.strategy == "grid":
        raise UsageError("backend=spark runs random or tpe searches: use strategy=random (or backend=local for grid)")
    return c
