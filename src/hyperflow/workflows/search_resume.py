"""What a resume keeps and what it may change: the search run it continues, read and checked, and the
settings it continues with.

A resume continues with the settings the search recorded. A setting given again replaces the recorded one
if a resume may change it (the budget, the stop rules, where trials run, what happens to the best model:
the search run records their current values in tag ``hyperflow.settings`` and each change as param
``resume.<n>.<key>``); another value for any other setting is refused, since it would change what the
trials are and how they compare: one line, nothing written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from hyperflow import names, tracking
from hyperflow.config import SearchConfig, TrainConfig, coerce, field_defaults
from hyperflow.core.data import Dataset
from hyperflow.errors import SearchFailed, UsageError, one_line
from hyperflow.tracking import search_store
from hyperflow.tracking.runs import same_param_value  # the rule log_params uses to keep or re-log a value
from hyperflow.workflows import search_lock as lock

RESUMABLE_SEARCH = (
    "max_evals",
    "budget",
    "timeout",
    "early_stop",
    "loss_threshold",
    "max_consecutive_failures",
    "register",
    "model_name",
    "refit",
    "backend",
    "parallelism",
    "spark_master",
    "seed_presets",
)
RESUMABLE_TRAIN = ("threads", "device", "flush_secs", "experiment", "run_name")
FORCED_TRAIN = ("log_model", "model_name", "progress", "tensorboard")  # set by the search for every trial


def search_run(run_id: str) -> Any:
    """The search run ``resume=`` names; a missing, deleted or non-search run is a usage error, a store that
    fails a :class:`SearchFailed`, a run another live process works on :class:`lock.SearchLocked` (exit 4)."""
    try:
        run = search_store.read_run(run_id)
    except search_store.UnreadableRun as exc:
        if tracking.is_store_error(exc.cause):
            raise SearchFailed(
                f"the tracking store {tracking.tracking_uri()} failed while reading run "
                f"{run_id}: {tracking.store_error_text(exc.cause)}"
            ) from None
        raise UsageError(f"resume={run_id}: cannot read that run: {one_line(exc.cause)}") from None
    if run is None:
        raise UsageError(f"resume={run_id}: no such run in {tracking.tracking_uri()}")
    role = run.data.tags.get(names.ROLE)
    if role != names.ROLE_SEARCH:
        raise UsageError(
            f"resume={run_id} is not a search run (its role is {role!r}): pass the id of the parent search run"
        )
    if run.info.lifecycle_stage == "deleted":
        raise UsageError(
            f"resume={run_id}: that search run was deleted: restore it (mlflow runs restore) or start a new search"
        )
    try:
        original = search_store.original_of(run)
    except Exception:  # a store failing here fails the resume's next call, with its line
        original = None
    if original:
        raise UsageError(
            f"resume={run_id} is a duplicate of search run {original}, made when the request that "
            f"created it was sent twice: hyperflow search resume={original}"
        )
    lock.check_free(run)  # another live process works on it: exit 4 before anything heavy
    return run


def check_same_data(run: Any, run_id: str, data: str, dataset: Dataset) -> None:
    """The data loaded now are those the search ran on (by fingerprint: the same file may have another path)."""
    recorded = run.data.tags.get(names.DATA_FINGERPRINT)
    if recorded and recorded != dataset.fingerprint:
        raise UsageError(
            f"resume={run_id}: the data differ from those the search ran on ({data}: "
            f"{dataset.fingerprint[:20]}…, the search: {recorded[:20]}…): resume with the same data, "
            f"or start a new search"
        )


def recorded_settings(
    run: Any, search: SearchConfig, base: TrainConfig, given: Collection[str] | None
) -> tuple[SearchConfig, TrainConfig, dict[str, str]]:
    """The settings to continue with and the changes a resume makes (key -> new value). ``given``: the
    settings the user set; None counts a setting as given when it differs from its default. ``data`` may
    name the same file by another path (the fingerprints are compared once the data are loaded)."""
    params, tags = run.data.params, run.data.tags
    current = json.loads(tags.get(names.SETTINGS) or "{}")
    changed: dict[str, str] = {}
    search_changes: dict[str, Any] = {}
    train_changes: dict[str, Any] = {}
    for cls, obj, changes, resumable, skip in (
        (SearchConfig, search, search_changes, RESUMABLE_SEARCH, ("resume", "space")),
        (TrainConfig, base, train_changes, RESUMABLE_TRAIN, FORCED_TRAIN),
    ):
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            default = field_defaults(cls)[f.name]
            value = getattr(obj, f.name)
            is_given = f.name in given if given is not None else value != default
            if isinstance(default, dict):
                recorded: Any = _recorded_mapping(params, f.name)
                if recorded is None:
                    recorded = {}
                if recorded == {k: str(v) for k, v in value.items()}:
                    continue
                if not is_given:
                    changes[f.name] = {k: yaml.safe_load(v) for k, v in recorded.items()}
                    continue
                raise UsageError(_kept_setting(search.resume, f.name, recorded, value))
            recorded = current.get(f.name, params.get(f"resolved.{f.name}", params.get(f.name)))
            if recorded is None:
                if default is not None:
                    continue  # not recorded (an older search): nothing to compare with
                recorded = "None"
            if same_param_value(str(value), str(recorded)):
                continue
            if not is_given:
                source = tags.get(names.DATA_SOURCE, "")
                if f.name == "data" and source and not source.startswith("builtin:") and Path(source).is_file():
                    recorded = source  # the file's absolute path: a relative one may not hold here
                changes[f.name] = coerce(f.name, recorded, cls)
            elif f.name in resumable:
                changed[f.name] = str(value)
            elif not (f.name == "data" and tags.get(names.DATA_FINGERPRINT)):
                raise UsageError(_kept_setting(search.resume, f.name, recorded, value))
    if search_changes:
        search = dataclasses.replace(search, **search_changes)
    if train_changes:
        base = base.replace(**train_changes)
    return search, base, changed


def _recorded_mapping(params: dict[str, str], name: str) -> dict[str, str] | None:
    """A mapping setting as ``to_params`` flattened it (``name.key``), resolved values winning; None if absent."""
    found = {k[len(name) + 1 :]: v for k, v in params.items() if k.startswith(f"{name}.")}
    found.update({k[len(name) + 10 :]: v for k, v in params.items() if k.startswith(f"resolved.{name}.")})
    return found or None


def _kept_setting(run_id: str | None, key: str, recorded: Any, given: Any) -> str:
    return (
        f"resume={run_id}: {key} was {recorded} in that search, not {given}: a resumed search keeps the "
        f"settings that define its trials (a resume may change only {', '.join(RESUMABLE_SEARCH)}); leave "
        f"{key} out to continue with {recorded}, or start a new search"
    )
