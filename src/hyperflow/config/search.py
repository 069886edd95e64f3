"""Search settings: a frozen dataclass like TrainConfig (coerced and validated on construction); every
other key configures the trials."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hyperflow import machine
from hyperflow.config.fields import check_choice, check_model_name, coerce_fields, setting, unknown_setting
from hyperflow.errors import UsageError

STRATEGIES = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "asha")
BACKENDS = ("local", "spark")
MAX_PARALLELISM = 4_096
MAX_EVALS = 1_000_000  # trials, and every count of trials


@dataclass(frozen=True)
class SearchConfig:
    space: str | None = setting(None, "YAML search space (default: the one shipped for the task)", names="a space file")
    strategy: str = setting("tpe", "tpe (hyperopt's; measured best, docs/benchmarks.md) | random | grid")
    max_evals: int = setting(30, "trials in all, those of a resumed search included (grid: at most the grid size)")
    timeout: float = setting(0.0, "wall-clock seconds for the whole search, the trial in flight included (0 = none)")
    early_stop: int = setting(0, "stop after this many trials without a better val_loss (0 = off)")
    loss_threshold: float | None = setting(None, "stop as soon as a trial's best val_loss is at or below this")
    n_startup_jobs: int = setting(8, "tpe: random trials before the model takes over (hyperopt's 20 suits big budgets)")
    gamma: float = setting(0.5, "tpe: how many trials count as good, ceil(gamma * sqrt(trials)), hyperopt's rule")
    pruner: str = setting("median", "none | median (median stopping rule) | asha (successive halving)")
    min_epochs: int = setting(3, "pruning: epochs every trial trains before it can be pruned (asha: first rung)")
    reduction_factor: int = setting(3, "asha: keep the best 1/reduction_factor of trials at each rung")
    prune_startup_trials: int = setting(3, "median: finished trials needed before pruning starts")
    prune_patience: int = setting(
        2,
        "median: epochs in a row, ending at the current one, a trial must be "
        "behind the median to be pruned (1: at once)",
    )
    max_consecutive_failures: int = setting(5, "stop the search after this many failed trials in a row")
    lr_bounds: str = setting("none", "auto = run the LR range test once and search lr (and max_lr) within its range")
    seed_presets: bool = setting(True, "evaluate the literature presets that fit the space first")
    resume: str | None = setting(
        None, "search run id to resume (rebuilds the trials from MLflow)", names="the run id of a search"
    )
    refit: bool = setting(False, "refit the best settings on train+val before logging the model")
    model_name: str | None = setting(
        None, "registered model name for the best model (default hyperflow-<data>)", names="a registered model name"
    )
    register: bool = setting(True, "register the best model and give it alias 'challenger'")
    backend: str = setting("local", "local (worker processes on this machine) | spark (hyperopt SparkTrials)")
    parallelism: int | str = setting(
        "auto",
        "trials at once, each with its share of the CPUs as torch threads; "
        "auto = the CPUs this process may use (1 on a GPU; spark: local[cpus]), "
        "at most max_evals; fewer where memory cannot hold them",
    )
    spark_master: str | None = setting(
        None, "spark: master URL (default local[parallelism])", names="a Spark master URL"
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate_search(self)


SEARCH_KEYS = {f.name for f in dataclasses.fields(SearchConfig)}


def validate_search(c: SearchConfig) -> None:
    """Refuse values and combinations that cannot work, with the fix in the message."""
    check_model_name(c.model_name)
    for key, allowed in (
        ("strategy", STRATEGIES),
        ("pruner", PRUNERS),
        ("lr_bounds", ("none", "auto")),
        ("backend", BACKENDS),
    ):
        check_choice(key, getattr(c, key), allowed)
    for key in ("max_evals", "min_epochs", "max_consecutive_failures", "parallelism", "prune_patience"):
        if getattr(c, key) != "auto" and getattr(c, key) < 1:
            raise UsageError(f"{key} must be at least 1, got {getattr(c, key)}")
    for key in ("timeout", "early_stop", "n_startup_jobs", "prune_startup_trials"):
        if getattr(c, key) < 0:
            raise UsageError(f"{key} must be zero or positive, got {getattr(c, key)}")
    for key in (
        "max_evals",
        "early_stop",
        "n_startup_jobs",
        "prune_startup_trials",
        "min_epochs",
        "max_consecutive_failures",
        "prune_patience",
    ):
        if getattr(c, key) > MAX_EVALS:
            raise UsageError(f"{key} must be at most {MAX_EVALS}, got {getattr(c, key)}")
    if c.parallelism != "auto" and c.parallelism > MAX_PARALLELISM:
        raise UsageError(f"parallelism must be at most {MAX_PARALLELISM}, got {c.parallelism}")
    if not math.isfinite(c.timeout):
        raise UsageError(f"timeout must be a finite number of seconds (0 = none), got {c.timeout}")
    if c.loss_threshold is not None and not math.isfinite(c.loss_threshold):
        raise UsageError(f"loss_threshold must be a finite number, got {c.loss_threshold}")
    if not 2 <= c.reduction_factor <= 1000:
        raise UsageError(f"reduction_factor must be from 2 to 1000, got {c.reduction_factor}")
    if not 0 < c.gamma < 1:
        raise UsageError(f"gamma must be between 0 and 1, got {c.gamma}")
    if c.backend == "spark" and c.strategy == "grid":
        raise UsageError("backend=spark runs random or tpe searches: use strategy=tpe (or backend=local for grid)")


def trials_at_once(c: SearchConfig, cores: int | None = None, gpus: int = 0) -> int:
    """How many trials run at once: ``parallelism``, where ``auto`` is the CPUs this process may use (or one per
    GPU the trials train on: :func:`hyperflow.machine.auto_trials`); never more than ``max_evals``. The search
    then caps it to what memory holds (:func:`hyperflow.machine.memory_cap`)."""
    wanted = machine.auto_trials(cores or machine.cpus(), gpus) if c.parallelism == "auto" else c.parallelism
    return max(1, min(wanted, c.max_evals))


def build_search_config(values: Mapping[str, Any]) -> SearchConfig:
    """A SearchConfig from raw values (strings from the command line or YAML)."""
    for key in values:
        if key not in SEARCH_KEYS:
            raise unknown_setting(key, SEARCH_KEYS, "search")
    return SearchConfig(**values)
