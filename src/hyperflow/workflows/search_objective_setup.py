"""The set-up of a search of the user's own function (``objective=``), before any run is written: the function
imported (or the callable given), the settings that mean something for it, its space, how many trials run at
once. hyperflow's trainer does not run, so its settings are refused when given (the function loads its own
data and trains its own way): only ``seed`` (the search's) and ``experiment`` apply; a search setting that
needs the trainer (``lr_bounds=auto``, ``refit``, ``seed_presets``) is refused too.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import yaml

from hyperflow import names, tracking
from hyperflow.config import SEARCH_KEYS, SearchConfig, TrainConfig, field_defaults
from hyperflow.config.search import trials_at_once
from hyperflow.engine.grid import check_grid
from hyperflow.engine.space import load_space, validate_space
from hyperflow.errors import UsageError
from hyperflow.tracking import new_store
from hyperflow.workflows.search_job import SearchJob
from hyperflow.workflows.search_objective import import_objective, not_portable
from hyperflow.workflows.search_resume import FORCED_TRAIN

TRAINER_SETTINGS_USED = ("seed", "experiment", "progress")  # the training settings an objective's search uses
SEARCH_SETTINGS_REFUSED = {
    "lr_bounds": "lr_bounds=auto runs hyperflow's LR range test: search your function's lr within a range instead",
    "refit": "refit trains the best settings again with hyperflow's trainer: refit in your function instead",
    "seed_presets": "the presets are hyperflow's trainer's settings: put the points you want tried in the space",
}


def prepare_objective(
    settings: SearchConfig,
    base: TrainConfig,
    given: Collection[str] | None,
    resumed: Any,
    function: Callable[..., Any] | None,
    space: dict[str, Any] | None,
    spark_session: Any = None,
) -> SearchJob:
    """A search of ``settings.objective`` (``function`` when the caller has it; else imported by that name), its
    space ``space`` (a mapping), ``settings.space`` (a file) or the one a resumed search recorded."""
    _refuse_trainer_settings(settings, base, given)
    if settings.backend == "spark":
        from hyperflow.engine import spark

        spark.check_available(spark_session)
    if function is None:
        function = import_objective(str(settings.objective))
    settings = dataclasses.replace(settings, seed_presets=False)
    space, path, edited = _space(settings, space, resumed)
    if settings.strategy == "grid":
        check_grid(space)
    new_store.make_if_missing()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    tracking.check_writable(base.experiment, run_id=settings.resume)
    at_once = trials_at_once(settings)
    why = not_portable(function) if at_once > 1 and settings.backend == "local" else ""  # Spark pickles by value
    if why and settings.parallelism != "auto":
        raise UsageError(f"{why}, or pass parallelism=1 (parallelism={settings.parallelism} runs trials in workers)")
    if why:  # parallelism=auto: one trial at a time, in this process
        print(f"hyperflow search: {why}; its trials run one at a time here (parallelism=1)", file=sys.stderr)
        at_once = 1
    return SearchJob(settings, base, None, space, path, edited, at_once, resumed, function=function)


def _refuse_trainer_settings(settings: SearchConfig, base: TrainConfig, given: Collection[str] | None) -> None:
    """One line for a setting that means nothing for a function of the user's own, rather than ignoring it."""
    if given is None:  # those that differ from their default (the search itself sets FORCED_TRAIN)
        defaults = field_defaults(TrainConfig)
        given = {k for k, v in defaults.items() if getattr(base, k) != v and k not in FORCED_TRAIN}
    trainer = sorted(k for k in given if k in TrainConfig.__dataclass_fields__ and k not in TRAINER_SETTINGS_USED)
    trainer = [k for k in trainer if k not in SEARCH_KEYS]  # model_name: the search's too
    if trainer:
        raise UsageError(
            f"objective={settings.objective} searches your function, which loads its own data and trains its "
            f"own way: {', '.join(trainer)} {'is a setting' if len(trainer) == 1 else 'are settings'} of "
            f"hyperflow's trainer; drop {'it' if len(trainer) == 1 else 'them'} (a value your function needs "
            f"can be a fixed entry of the space, e.g. '{trainer[0]}: ...')"
        )
    refused = {
        "lr_bounds": settings.lr_bounds == "auto",
        "refit": settings.refit,
        "seed_presets": settings.seed_presets and "seed_presets" in given,
    }
    for key, wrong in refused.items():
        if wrong:
            raise UsageError(f"objective={settings.objective}: {SEARCH_SETTINGS_REFUSED[key]}")


def _space(
    settings: SearchConfig, given: dict[str, Any] | None, resumed: Any
) -> tuple[dict[str, Any], Path | None, bool]:
    """The function's parameters: the mapping given, the space file, else the space a resumed search recorded;
    its file, and whether it differs from the recorded one."""
    recorded = resumed.data.tags.get(names.SPACE) if resumed is not None else None
    path = None
    if given is not None:
        if not isinstance(given, dict) or not given:
            raise UsageError("space must map each parameter to a dimension, e.g. {'lr': {'type': 'loguniform', ...}}")
        space = copy.deepcopy(given)
        validate_space(space, free=True)
    elif settings.space:
        path = Path(settings.space)
        space = load_space(path, free=True)
    elif recorded:
        space = yaml.safe_load(recorded)
        validate_space(space, free=True)
    else:
        raise UsageError(
            f"objective={settings.objective} needs a search space: space=my_space.yaml (a YAML file mapping each "
            f"parameter your function reads to a dimension, e.g. 'lr: {{type: loguniform, low: 1.0e-4, high: 0.1}}')"
        )
    return space, path, bool(recorded) and yaml.safe_load(recorded) != space
