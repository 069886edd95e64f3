"""Search settings: a frozen pydantic dataclass like TrainConfig (typed, ranged and checked on construction);
every other key configures the trials."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from hyperflow.config.fields import SETTINGS_CONFIG, Auto
from hyperflow.config.settings import Settings
from hyperflow.config.train import ModelName
from hyperflow.errors import UsageError

STRATEGIES = ("tpe", "random", "grid", "bohb")
PRUNERS = ("none", "median", "asha", "hyperband")
BACKENDS = ("local", "spark")
MAX_PARALLELISM = 4_096
MAX_EVALS = 1_000_000  # trials, and every count of trials
Trials = Annotated[int, Field(ge=0, le=MAX_EVALS)]  # a count of trials (0: off)
AtLeastOne = Annotated[int, Field(ge=1, le=MAX_EVALS)]


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class SearchConfig(Settings):
    objective: str | None = Field(
        None,
        description="package.module:function: search your own function, called as fn(params, trial) and "
        "returning the loss (or a dict with key 'loss'), instead of hyperflow's trainer; needs space=, no data "
        "(docs/objective.md)",
        json_schema_extra={"names": "a function"},
    )
    space: str | None = Field(
        None,
        description="YAML search space (default: the one shipped for the task; with objective=, your function's "
        "parameters, required)",
        json_schema_extra={"names": "a space file"},
    )
    strategy: Literal[STRATEGIES] = Field(
        "tpe",
        description="tpe = hyperopt's (measured best, docs/benchmarks.md), bohb = its TPE fitted on the highest "
        "epoch that n_startup_jobs trials reached, pruned ones included (BOHB's model)",
    )
    max_evals: AtLeastOne = Field(
        30, description="trials in all, those of a resumed search included (grid: at most the grid size)"
    )
    timeout: float = Field(
        0.0, ge=0, description="wall-clock seconds for the whole search, the trial in flight included (0 = none)"
    )
    budget: Annotated[int, Field(ge=0, le=10**12)] = Field(
        0,
        description="units of work for the whole search: epochs (hyperflow's trainer) or reported steps (an "
        "objective), pruned and failed trials included; the trial in flight stops when they are used (0 = none)",
    )
    early_stop: Trials = Field(0, description="stop after this many trials without a better val_loss (0 = off)")
    loss_threshold: float | None = Field(
        None, description="stop as soon as a trial's best val_loss is at or below this"
    )
    n_startup_jobs: Trials = Field(
        8, description="tpe, bohb: random trials before the model takes over (hyperopt's 20 suits big budgets)"
    )
    gamma: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="tpe, bohb: how many trials count as good, ceil(gamma * sqrt(trials)), hyperopt's rule",
    )
    pruner: Literal[PRUNERS] = Field(
        "median",
        description="median = median stopping rule, asha = successive halving, hyperband = brackets of successive "
        "halving",
    )
    min_epochs: AtLeastOne = Field(
        3,
        description="pruning: epochs (an objective: reports) every trial makes before it can be pruned (asha, "
        "hyperband: first rung)",
    )
    reduction_factor: int = Field(
        3, ge=2, le=1000, description="asha, hyperband: keep the best 1/reduction_factor of trials at each rung"
    )
    prune_startup_trials: Trials = Field(3, description="median: finished trials needed before pruning starts")
    prune_patience: AtLeastOne = Field(
        2,
        description="median: epochs in a row, ending at the current one, a trial must be "
        "behind the median to be pruned (1: at once)",
    )
    max_consecutive_failures: AtLeastOne = Field(
        5, description="stop the search after this many failed trials in a row"
    )
    lr_bounds: Literal["none", "auto"] = Field(
        "none", description="auto = run the LR range test once and search lr (and max_lr) within its range"
    )
    seed_presets: bool = Field(True, description="evaluate the literature presets that fit the space first")
    resume: str | None = Field(
        None,
        description="search run id to resume (rebuilds the trials from MLflow)",
        json_schema_extra={"names": "the run id of a search"},
    )
    refit: bool = Field(False, description="refit the best settings on train+val before logging the model")
    model_name: ModelName = Field(
        None,
        description="registered model name for the best model (default hyperflow-<data>)",
        json_schema_extra={"names": "a registered model name"},
    )
    register: bool = Field(True, description="register the best model and give it alias 'challenger'")
    backend: Literal[BACKENDS] = Field(
        "local", description="local = worker processes on this machine, spark = hyperopt SparkTrials"
    )
    parallelism: Annotated[int, Field(ge=1, le=MAX_PARALLELISM)] | Auto = Field(
        "auto",
        description="trials at once, each with its share of the CPUs as torch threads; "
        "auto = the CPUs this process may use (1 on a GPU; spark: local[cpus]), "
        "at most max_evals; fewer where memory cannot hold them",
    )
    spark_master: str | None = Field(
        None,
        description="spark: master URL (default local[parallelism])",
        json_schema_extra={"names": "a Spark master URL"},
    )

    @model_validator(mode="after")
    def _rules(self) -> SearchConfig:
        if self.backend == "spark" and self.strategy == "grid":
            raise UsageError("backend=spark runs random or tpe searches: use strategy=tpe (or backend=local for grid)")
        return self


SEARCH_KEYS = {f.name for f in dataclasses.fields(SearchConfig)}


def trials_at_once(c: SearchConfig, cores: int | None = None, gpus: int = 0) -> int:
    """How many trials run at once: ``parallelism``, where ``auto`` is the CPUs this process may use (or one per
    GPU the trials train on: :func:`hyperflow.machine.auto_trials`); never more than ``max_evals``. The search
    then caps it to what memory holds (:func:`hyperflow.machine.memory_cap`)."""
    from hyperflow import machine

    wanted = machine.auto_trials(cores or machine.cpus(), gpus) if c.parallelism == "auto" else c.parallelism
    return max(1, min(wanted, c.max_evals))


def build_search_config(values: Mapping[str, Any]) -> SearchConfig:
    """A SearchConfig from raw values (strings from the command line or YAML)."""
    return SearchConfig(**values)
