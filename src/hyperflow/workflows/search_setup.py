"""A search's set-up, before any run is written: every input check (a resume reads its run only), the settings
it continues with, the data, the space and how many trials run at once; then, in its run, the settings
recorded and ``lr_bounds=auto``'s range test."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
import yaml

from hyperflow import machine, names, tracking
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.config.search import MAX_EVALS, trials_at_once
from hyperflow.core.assembly import load_data, setup_training
from hyperflow.core.data import Dataset
from hyperflow.engine.grid import check_grid, grid_points
from hyperflow.engine.space import check_auto_lrs, config_at, default_space_path, load_space, validate_space
from hyperflow.engine.space_points import complete_point, probe_points
from hyperflow.errors import UsageError
from hyperflow.runtime import processes
from hyperflow.tracking import new_store, search_record, search_store
from hyperflow.workflows import search_resume
from hyperflow.workflows.lr_find import lr_range_test_run
from hyperflow.workflows.search_job import SearchJob

FULL_CHECK_POINTS = 5_000  # a grid up to this size has every combination checked before the first trial


def prepare_search(
    settings: SearchConfig,
    base: TrainConfig,
    given: Collection[str] | None,
    spark_session: Any = None,
    function: Callable[..., Any] | None = None,
    space: dict[str, Any] | None = None,
) -> SearchJob:
    """Everything that can fail on bad input, before any run is written. ``given``: the settings the user set
    (a resume takes every other one from the search it resumes; None: those that differ from their default).
    An objective of the user's own (``settings.objective``, ``function`` when given as a callable, ``space`` as a
    mapping): :func:`hyperflow.workflows.search_objective_setup.prepare_objective`."""
    base = base.replace(log_model=False, model_name=None, progress=False, tensorboard=False)
    if settings.backend == "spark" and not settings.objective:
        from hyperflow.engine import spark

        spark.check_available(spark_session)
    if settings.budget and given is not None and "max_evals" not in given:  # the budget alone ends the search
        settings = dataclasses.replace(settings, max_evals=MAX_EVALS)
    resumed, changed = None, {}
    if settings.resume:
        resumed = search_resume.search_run(settings.resume)
        settings, base, changed = search_resume.recorded_settings(resumed, settings, base, given)
    if settings.objective:
        from hyperflow.workflows.search_objective_setup import prepare_objective

        job = prepare_objective(settings, base, given, resumed, function, space, spark_session)
        job.changed = changed
        return job
    check_auto_lrs(base)
    if settings.backend == "local" and settings.parallelism != 1 and processes.available():
        processes.prestart()  # the child processes' imports overlap the checks below
    dataset = load_data(base)
    if resumed is not None:
        search_resume.check_same_data(resumed, settings.resume, base.data, dataset)
    space, path, edited = _space(settings, base, given, dataset, resumed)
    _check_space(space, settings, base, dataset)
    new_store.make_if_missing()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    tracking.check_writable(base.experiment, run_id=settings.resume)  # e.g. a file named mlruns
    at_once = _trials_at_once(settings, base, dataset, spark_session)
    return SearchJob(settings, base, dataset, space, path, edited, at_once, resumed, changed)


def _space(
    settings: SearchConfig, base: TrainConfig, given: Collection[str] | None, dataset: Dataset, resumed: Any
) -> tuple[dict[str, Any], Path | None, bool]:
    """The space file given, else (resuming) the space the search ran with, else the task's default; its path;
    whether it differs from the one a resumed search recorded."""
    recorded = resumed.data.tags.get(names.SPACE) if resumed is not None else None
    if settings.space:
        path: Path | None = Path(settings.space)
        space = load_space(path)  # your space: what it sets wins over the command line
    elif recorded:
        path, space = None, yaml.safe_load(recorded)
        validate_space(space)
    else:  # the shipped space; a setting the user gave pins its dimension (epochs=5: every trial 5 epochs)
        path = default_space_path(dataset.task)
        pinned = {k for k in given or () if k in TrainConfig.__dataclass_fields__}
        space = {k: v for k, v in load_space(path).items() if k not in pinned}
        if not space:
            raise UsageError(
                f"every dimension of the shipped search space is set ({', '.join(sorted(pinned))}): "
                f"nothing is left to search; drop one, or run hyperflow train"
            )
    return space, path, bool(recorded) and yaml.safe_load(recorded) != space


def _check_space(space: dict[str, Any], settings: SearchConfig, base: TrainConfig, dataset: Dataset) -> None:
    """Every value the space can give makes a valid configuration, before the first trial: each choice
    value and both ends of each range, in every branch (and every combination of a small grid)."""
    size = check_grid(space) if settings.strategy == "grid" else None
    points = list(probe_points(space))
    if size is not None and size <= FULL_CHECK_POINTS:
        points += grid_points(space)
    for point in points:
        config_at(base, point)
    setup_training(config_at(base, points[0]), dataset=dataset, train=False)


def _trials_at_once(settings: SearchConfig, base: TrainConfig, dataset: Dataset, spark_session: Any) -> int:
    """``parallelism`` resolved (:func:`trials_at_once`: ``auto`` is the CPUs this process may use, or one
    trial per GPU), then capped to the workers this machine's memory holds, each with its copy of the data
    (on this machine only: Spark's ``local`` master or the local backend); a cap is said in one line."""
    on_gpu = base.device.startswith("cuda") or (base.device == "auto" and torch.cuda.is_available())
    at_once = trials_at_once(settings, gpus=1 if on_gpu else 0)  # the trials all train on the one device given
    master = settings.spark_master or "local"
    if not (settings.backend == "local" or (spark_session is None and master.startswith("local"))):
        return at_once  # a cluster's executors: their memory is the cluster's
    available, source = machine.available_memory()
    at_once, note = machine.memory_cap(at_once, available, dataset.memory_bytes, source)
    if note:
        print(f"hyperflow search: {note}", file=sys.stderr, flush=True)
    return at_once


# ------------------------------------------------------------------------------------- in the search run
def record_settings(job: SearchJob, run_id: str) -> None:
    """A new search logs every setting as a param (MLflow keeps params as first written). The settings a
    resume may change live in tag ``hyperflow.settings`` (their current values), and each change is kept
    as param ``resume.<n>.<key>``, so that any number of resumes can change them."""
    s, text = job.settings, job.space_text
    settings = {
        **{k: str(getattr(s, k)) for k in search_resume.RESUMABLE_SEARCH},
        **{k: str(getattr(job.base, k)) for k in search_resume.RESUMABLE_TRAIN},
    }
    tags = {names.SETTINGS: json.dumps(settings)}
    if len(text) <= 7000:
        tags[names.SPACE] = text
    if job.resumed is None:
        trainer = job.base.to_params() if job.dataset is not None else {"seed": str(job.base.seed)}
        params = {**{k: str(v) for k, v in vars(s).items() if k != "resume"}, **trainer}
        search_record.record_new_search(run_id, params, tags, job.space_path, job.dataset, text)
        return
    n = int(job.resumed.data.tags.get(names.RESUMES, "0")) + 1
    params = {f"resume.{n}.{k}": v for k, v in job.changed.items()}
    if job.space_edited:
        params[f"resume.{n}.space"] = str(job.space_path)
    search_record.record_resume(run_id, n, tags, params, text if job.space_edited else None)


def lr_bounds(job: SearchJob, run_id: str) -> dict[str, Any]:
    """The space to search: with ``lr_bounds=auto``, lr within the range the LR range test finds (run once, a
    child run of the search; a resumed search keeps the bounds it found)."""
    if job.settings.lr_bounds != "auto" or "lr" not in job.space:
        return job.space
    params = search_store.run_params(run_id)
    if "lr_bounds.low" in params:
        low, high = float(params["lr_bounds.low"]), float(params["lr_bounds.high"])
    else:
        point = complete_point(job.space, {})
        point.pop("lr", None)
        setup = setup_training(config_at(job.base, {**point, "lr": 1e-3}), dataset=job.dataset)
        low, high = lr_range_test_run(setup, run_id).finder.lr_range_
        if job.base.schedule == "onecycle":
            high *= 3  # the one-cycle peak may sit closer to the cliff: it is held only briefly
        tracking.log_params(run_id, {"lr_bounds.low": str(low), "lr_bounds.high": str(high)})
    return {**job.space, "lr": {"type": "loguniform", "low": low, "high": high}}
