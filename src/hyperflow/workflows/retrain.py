"""The ``retrain`` workflow, built to be scheduled: newest data, the champion's settings (or a small
search), then the promotion gate. Idempotent (a finished retrain of the same data and code is skipped)
and locked (one retrain per model at a time, see :mod:`hyperflow.workflows.lock`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import PromoteConfig, RetrainConfig, TrainConfig, build_config, build_retrain_config  # noqa: F401 (re-exported)
from hyperflow.core.assembly import load_data
from hyperflow.core.builtins import BUILTINS
from hyperflow.errors import UsageError
from hyperflow.tracking import artifacts, registry, registry_writes
from hyperflow.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    Client,
    alias_version,
    model_exists,
    model_version,
    registered_model,
    registry_error,
    run_config,
    version_run,
)
from hyperflow.tracking.runs import code_version
from hyperflow.workflows.gate import build_gate, check_data_fits
from hyperflow.workflows.lock import RegistryLock
from hyperflow.workflows.promote import promote
from hyperflow.workflows.promotion_checks import first_promotion_refused
from hyperflow.workflows.promotion_record import PromoteOutcome

KEY_TAG, OUTCOME_TAG = names.RETRAIN_KEY, names.OUTCOME
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".npz")


@dataclass
class RetrainOutcome:
    run_id: str
    outcome: str  # promoted | rejected | skipped
    data: str
    key: str
    version: str | None = None
    promotion: PromoteOutcome | None = None
    previous_run_id: str | None = None  # the finished retrain a skip refers to, or the champion's own run
    by_champion: bool = False  # skipped because the champion's own run trained the same


def newest_data(spec: str) -> str:
    """A built-in name or file as is; a folder or glob as its newest data file (hidden files ignored, so
    write new files under a dot-name and rename them when complete)."""
    path = Path(spec)
    if spec in BUILTINS or path.is_file():
        return spec
    if path.is_dir():
        files = [f for f in path.iterdir() if f.is_file()]
    elif any(ch in spec for ch in "*?["):
        files = [Path(f) for f in glob.glob(spec) if Path(f).is_file()]
    else:
        return spec  # missing: load_data says so
    files = [f for f in files if not f.name.startswith(".") and f.suffix.lower() in DATA_SUFFIXES]
    if not files:
        raise UsageError(f"data '{spec}' holds no data file ({', '.join(DATA_SUFFIXES)})")
    return str(max(files, key=lambda f: (f.stat().st_mtime, f.name)))


def retrain_key(name: str, fingerprint: str, mode: str, settings: Mapping[str, Any]) -> str:
    payload = json.dumps(
        {
            "model": name,
            "data": fingerprint,
            "code": code_version(),
            "mode": mode,
            "settings": {k: str(v) for k, v in sorted(settings.items())},
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def finished_retrain(client: Client, experiment_id: str, key: str) -> str | None:
    """The id of a FINISHED retrain run with this key that promoted or rejected, if any."""
    try:
        runs = tracking.runs_tagged(experiment_id, KEY_TAG, key, finished=True, max_results=20, client=client)
    except Exception as exc:  # fails closed: an unreadable store is not "never retrained"
        raise registry_error(
            exc, "looking for a finished retrain of the same data and code", store="tracking store"
        ) from None
    done = (names.OUTCOME_PROMOTED, names.OUTCOME_REJECTED)
    return next((r.info.run_id for r in runs if r.data.tags.get(OUTCOME_TAG) in done), None)


# settings that say where a run goes and how it is shown, not what it trains (data: compared by fingerprint)
NOT_THE_MODEL = ("data", "experiment", "run_name", "model_name", "log_model", "progress", "tensorboard", "flush_secs")


def champion_trained(
    client: Client, config: RetrainConfig, champion: str | None, base: TrainConfig, fingerprint: str
) -> str | None:
    """The champion's own run when it trained what this retrain would (mode=champion): the same data (by
    fingerprint), the same code, the same settings (no override changed one) and, for a search's best trial,
    no refit on train+val. A copy of the champion would only pass the gate on a tie."""
    if champion is None or config.mode != "champion":
        return None
    run = version_run(client, model_version(client, config.model_name, champion))
    tags = run.data.tags
    if tags.get(names.ROLE) == names.ROLE_TRIAL and tags.get(names.PARENT_RUN_ID):  # its search holds these tags
        try:
            search = client.get_run(tags[names.PARENT_RUN_ID]).data
        except Exception as exc:
            raise registry_error(exc, "reading the search run of the champion", store="tracking store") from None
        refit = json.loads(search.tags.get(names.SETTINGS) or "{}").get("refit", search.params.get("refit"))
        if str(refit) != "False":
            return None
        tags = search.tags
    if tags.get(names.DATA_FINGERPRINT) != fingerprint or tags.get(names.CODE_VERSION) != code_version():
        return None
    ran = run_config(client, run)
    same = all(getattr(ran, f) == getattr(base, f) for f in TrainConfig.__dataclass_fields__ if f not in NOT_THE_MODEL)
    return run.info.run_id if same else None


def _base_config(client: Client, config: RetrainConfig, overrides: dict[str, Any], champion: str | None) -> TrainConfig:
    """The champion's training settings with the new data and the overrides (mode=search may start
    from defaults when there is no champion yet)."""
    if champion is None and config.mode == "champion":
        raise UsageError(
            f"model '{config.model_name}' has no champion to take settings from: promote a version "
            f"first (hyperflow promote) or use mode=search"
        )
    base = (
        run_config(client, version_run(client, model_version(client, config.model_name, champion)))
        if champion
        else build_config({})
    )
    # progress as a search or training shows it (a scheduler's log gets a line per trial or epoch), whatever the
    # champion's own run had
    changes: dict[str, Any] = {"experiment": config.experiment, "progress": True}
    if config.data:
        changes["data"] = newest_data(config.data)
    if config.target:
        changes["target"] = config.target
    return base.replace(**{**changes, **overrides})  # a setting given (e.g. progress=false) wins, once


def retrain(
    config: RetrainConfig, overrides: Mapping[str, Any] | None = None, *, settle: float = 1.0
) -> RetrainOutcome:
    """Skip, or lock, train (or search), register as challenger and promote through the gate."""
    client = registry.default_client()
    overrides = dict(overrides or {})
    if config.mode == "champion":
        registered_model(client, config.model_name)
    exists = model_exists(client, config.model_name)  # fails closed: an unreadable registry stops here
    champion = alias_version(client, config.model_name, CHAMPION) if exists else None
    base = _base_config(client, config, overrides, champion)
    dataset = load_data(base)  # bad data fails here, before any run
    gate = build_gate(config.gate, dataset.task, config.gate_rules)  # a bad gate too, before any training
    if champion is not None:  # data the champion's model cannot be compared on: before any run or version
        check_data_fits(client, config.model_name, champion, dataset, base.target)
        tracking.load_version(config.model_name, champion)  # the gate will score it: its files must load
    if champion is None and not gate.has_threshold and not config.allow_first:
        raise first_promotion_refused(config.model_name, gate, gate.rules[0].metric)
    settings = {**overrides, **({"max_evals": config.max_evals} if config.mode == "search" else {})}
    key = retrain_key(config.model_name, dataset.fingerprint, config.mode, settings)
    tags = {KEY_TAG: key, names.MODEL_NAME: config.model_name, **tracking.run_tags(dataset)}
    experiment_id = _experiment_id(config.experiment)
    previous = None if config.force else finished_retrain(client, experiment_id, key)
    if previous:
        return _skipped(config, base, key, tags, previous)
    done_by_champion = None if config.force else champion_trained(client, config, champion, base, dataset.fingerprint)
    if done_by_champion:
        return _skipped(config, base, key, tags, done_by_champion, by_champion=True)
    artifacts.check_writable(config.experiment)  # an unwritable artifact folder: exit 2 before any run or lock
    if not exists:
        registry_writes.create_model(client, config.model_name)
    with RegistryLock(config.model_name, lease=config.lease, settle=settle, client=client) as lock:
        taken = lock.takeover_message()
        if taken:  # a dead job's lock: say whose, and which of its runs were ended KILLED
            print(f"hyperflow retrain: {taken}", file=sys.stderr, flush=True)
        previous = None if config.force else finished_retrain(client, experiment_id, key)
        if previous:  # finished while we waited for the lock
            return _skipped(config, base, key, tags, previous)
        with tracking.tracked_run(
            names.ROLE_RETRAIN,
            experiment=config.experiment,
            tags=tags,
            run_name=tracking.unique_run_name(names.ROLE_RETRAIN, config.model_name),
        ) as run:
            run_id = run.info.run_id
            lock.attach(run_id)
            tracking.log_params(
                run_id,
                {
                    "model_name": config.model_name,
                    "mode": config.mode,
                    "resolved_data": base.data,
                    "force": str(config.force),
                    **({"max_evals": str(config.max_evals)} if config.mode == "search" else {}),
                },
            )
            version = (
                _search(config, base, run_id, set(overrides))
                if config.mode == "search"
                else _train_new_version(config, base, run_id)
            )
            registry_writes.set_version_tags(
                client,
                config.model_name,
                version,
                {names.VERSION_RETRAIN_RUN_ID: run_id, names.VERSION_RETRAIN_KEY: key},
            )
            lock.check()
            promotion = promote(
                PromoteConfig(
                    model_name=config.model_name,
                    version=version,
                    gate=config.gate,
                    gate_rules=config.gate_rules,
                    allow_first=config.allow_first,
                    experiment=config.experiment,
                ),
                parent_run_id=run_id,
                before_move=lock.check,
            )
            outcome = names.OUTCOME_PROMOTED if promotion.promoted else names.OUTCOME_REJECTED
            tracking.set_tags(
                {OUTCOME_TAG: outcome, names.VERSION_TRAINED: version, names.PROMOTE_RUN_ID: promotion.run_id}
            )
    return RetrainOutcome(run_id, outcome, base.data, key, version, promotion)


def _experiment_id(name: str | None) -> str:
    try:
        return tracking.current_experiment_id(name)  # MLflow's rule without a name: env, active run, or default
    except UsageError:  # a deleted experiment: how to restore it
        raise
    except Exception as exc:
        raise registry_error(exc, f"opening experiment '{name or 'the default'}'", store="tracking store") from None


def _skipped(
    config: RetrainConfig, base: TrainConfig, key: str, tags: dict[str, str], previous: str, by_champion: bool = False
) -> RetrainOutcome:
    with tracking.tracked_run(
        names.ROLE_RETRAIN,
        experiment=config.experiment,
        run_name=tracking.unique_run_name(names.ROLE_RETRAIN, config.model_name),
        tags={**tags, OUTCOME_TAG: names.OUTCOME_SKIPPED, names.SKIPPED_FOR: previous},
    ) as run:
        tracking.log_params(
            run.info.run_id, {"model_name": config.model_name, "mode": config.mode, "resolved_data": base.data}
        )
    return RetrainOutcome(
        run.info.run_id, names.OUTCOME_SKIPPED, base.data, key, previous_run_id=previous, by_champion=by_champion
    )


def _train_new_version(config: RetrainConfig, base: TrainConfig, run_id: str) -> str:
    from hyperflow.workflows.train import train

    outcome = train(base.replace(model_name=config.model_name, log_model=True), parent_run_id=run_id)
    version = str(outcome.registered_version)
    registry_writes.set_alias(registry.default_client(), config.model_name, CHALLENGER, version)
    return version


def _search(config: RetrainConfig, base: TrainConfig, run_id: str, given: set[str]) -> str:
    """A small search nested under the retrain run, in this thread: Ctrl-C or SIGTERM stops its trials and
    ends its runs KILLED as it does for ``hyperflow search``. ``given``: the training settings the job was
    given, which pin their dimensions of the shipped space as they do for ``hyperflow search``."""
    from hyperflow.config.search import build_search_config
    from hyperflow.workflows.search import search

    settings = build_search_config({"max_evals": config.max_evals, "model_name": config.model_name})
    outcome = search(settings, base, given=given, parent_run_id=run_id)
    if outcome.registered is None:
        raise RuntimeError(f"the search {outcome.run_id} registered no model: no trial finished")
    return outcome.registered[1]
