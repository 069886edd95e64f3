"""The suite's methods: one search of one task for one seed, stopped at a budget of units of work (epochs).

- hyperflow's (``default``: as shipped, its default strategy and pruner; ``tpe``: its TPE, ``pruner=none``;
  ``random``: ``strategy=random``, ``pruner=none``; ``hyperband``: its TPE with ``pruner=hyperband``; ``bohb``,
  ``bohb_median``: ``strategy=bohb``, its TPE fitted on the highest epoch with enough trials, with
  ``pruner=hyperband`` and ``pruner=median``) run through its public Python API,
  ``hyperflow.search(objective, space=..., budget=..., seed=..., parallelism=1, register=False)``, tracked in a
  temporary sqlite store per search. One trial at a time: quality must not depend on the order in which parallel
  trials finish.
- Optuna 5's (``optuna``, ``optuna_median``, ``optuna_hyperband``): ``TPESampler(seed=seed)`` with its defaults,
  alone, with ``MedianPruner()`` and with ``HyperbandPruner()``; the study stops once the trials have used the
  budget (a trial under way then finishes: the curve counts only what ended within the budget).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from suite_objectives import Diverged, TrialLog, make_objective, task_space

METHODS: dict[str, dict[str, Any]] = {  # name -> hyperflow's settings over its defaults, or Optuna's pruner
    "default": {},
    "tpe": {"strategy": "tpe", "pruner": "none"},
    "random": {"strategy": "random", "pruner": "none"},
    "hyperband": {"strategy": "tpe", "pruner": "hyperband"},
    "bohb": {"strategy": "bohb", "pruner": "hyperband"},
    "bohb_median": {"strategy": "bohb", "pruner": "median"},
    "optuna": {"pruner": "none"},
    "optuna_median": {"pruner": "median"},
    "optuna_hyperband": {"pruner": "hyperband"},
}


def is_optuna(method: str) -> bool:
    return method.startswith("optuna")


def run(method: str, task: str, seed: int, budget: int, log: TrialLog) -> dict[str, Any]:
    """Search ``task`` with ``method``; the trials land in ``log``; returns what the method itself reports."""
    space, log_ints = task_space(task)
    objective = make_objective(task, seed, log)
    if is_optuna(method):
        return run_optuna(METHODS[method]["pruner"], objective, space, log_ints, seed, budget)
    return run_hyperflow(METHODS[method], objective, space, seed, budget)


def hyperflow_api() -> bool:
    """Whether the imported hyperflow has its Python API, ``hyperflow.search(objective, space=...)``."""
    import hyperflow

    return callable(getattr(hyperflow, "search", None))


def run_hyperflow(settings: dict[str, Any], objective: Any, space: dict, seed: int, budget: int) -> dict[str, Any]:
    import hyperflow

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        outcome = hyperflow.search(
            objective, space=space, budget=budget, seed=seed, parallelism=1, register=False, **settings
        )
    return {"best_value": outcome.best_value, "best_params": outcome.best_params}


class OptunaTrial:
    """Optuna's trial behind the handle the objective calls: ``report(step, value)`` raises ``TrialPruned``
    when the pruner stops the trial."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def report(self, step: int, value: float, **metrics: float) -> None:
        import optuna

        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


def suggest(trial: Any, space: dict[str, Any], log_ints: tuple[str, ...] = ()) -> dict[str, Any]:
    """A point of a space in hyperflow's format drawn by an Optuna trial (``log_ints``: integers on a log scale)."""
    point: dict[str, Any] = {}
    for key, d in space.items():
        if not isinstance(d, dict):
            point[key] = d
        elif d["type"] == "loguniform" and key in log_ints:
            point[key] = trial.suggest_int(key, d["low"], d["high"], log=True)
        elif d["type"] in ("loguniform", "uniform"):
            point[key] = trial.suggest_float(key, d["low"], d["high"], log=d["type"] == "loguniform")
        elif d["type"] == "quniform":
            point[key] = trial.suggest_float(key, d["low"], d["high"], step=d["q"])
        elif d["type"] == "int":
            point[key] = trial.suggest_int(key, d["low"], d["high"])
        elif "options" in d:  # a conditional: the chosen value's own sub-space
            point[key] = trial.suggest_categorical(key, list(d["options"]))
            point.update(suggest(trial, d["options"][point[key]] or {}, log_ints))
        else:
            point[key] = trial.suggest_categorical(key, d["values"])
    return point


def run_optuna(
    pruner: str, objective: Any, space: dict, log_ints: tuple[str, ...], seed: int, budget: int
) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner}
    pruners["hyperband"] = optuna.pruners.HyperbandPruner
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruners[pruner]())

    def stop_at_budget(study: optuna.Study, _trial: Any) -> None:
        if objective.log.units() >= budget:
            study.stop()

    study.optimize(
        lambda t: objective(suggest(t, space, log_ints), OptunaTrial(t)), catch=(Diverged,), callbacks=[stop_at_budget]
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"best_value": study.best_value, "best_params": study.best_params} if done else {}
