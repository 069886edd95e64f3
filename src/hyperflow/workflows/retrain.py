"""The ``retrain`` workflow, built to be scheduled: newest data, the champion's settings (or a small
search), then the promotion gate. Idempotent (a finished retrain of the same data and code is skipped)
and locked (one retrain per model at a time, see :mod:`hyperflow.workflows.lock`).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import mlflow
from mlflow.tracking import MlflowClient

import hyperflow
from hyperflow import tracking
from hyperflow.config import TrainConfig, _f, build_config, coerce
from hyperflow.data import BUILTINS
from hyperflow.errors import UsageError
from hyperflow.registry import CHALLENGER, CHAMPION, alias_version, registered_model, run_config, version_run
from hyperflow.training import load_data
from hyperflow.workflows.lock import RegistryLock
from hyperflow.workflows.promote import GATE_HELP, PromoteConfig, PromoteOutcome, promote

KEY_TAG, OUTCOME_TAG = "hyperflow.retrain_key", "hyperflow.outcome"
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".npz")


@dataclass(frozen=True)
class RetrainConfig:
    model_name: str | None = _f(None, "registered model to retrain (required)")
    data: str | None = _f(None, "new data: a file, a folder or a glob (the newest file wins), or a built-in name "
                                "(default: the champion's data)")
    target: str | None = _f(None, "target column (default: the champion's)")
    mode: str = _f("champion", "champion (train with the champion's settings) | search (a small search)")
    max_evals: int = _f(10, "mode=search: trials")
    force: bool = _f(False, "retrain even if a retrain of the same data and code already finished")
    gate: str | None = _f(None, GATE_HELP)
    gate_rules: dict = _f({}, "gate.<metric>.<rule> values collected from the command line")
    lease: float = _f(600.0, "lock lease in seconds; the holder renews it every lease/3")
    experiment: str | None = _f(None, "MLflow experiment (default: MLflow's current one)")


def build_retrain_config(values: Mapping[str, Any]) -> tuple[RetrainConfig, dict[str, Any]]:
    """The retrain settings, and the training settings that override the champion's."""
    fields = RetrainConfig.__dataclass_fields__
    rules = {k: str(v) for k, v in values.items() if k.startswith("gate.")}
    own = {k: coerce(k, v, RetrainConfig) for k, v in values.items() if k in fields}
    overrides = {k: v for k, v in values.items() if k not in fields and not k.startswith("gate.")}
    config = RetrainConfig(**{**own, "gate_rules": {**own.get("gate_rules", {}), **rules}})
    if not config.model_name:
        raise UsageError("model_name is required: the registered model to retrain")
    if config.mode not in ("champion", "search"):
        raise UsageError(f"unknown mode '{config.mode}': choose champion or search")
    if config.max_evals < 1 or config.lease < 10:
        raise UsageError("max_evals must be at least 1 and lease at least 10 seconds")
    build_config(overrides)  # unknown or invalid training settings fail now
    return config, overrides


@dataclass
class RetrainOutcome:
    run_id: str
    outcome: str  # promoted | rejected | skipped
    data: str
    key: str
    version: str | None = None
    promotion: PromoteOutcome | None = None
    previous_run_id: str | None = None  # the finished retrain a skip refers to


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


@functools.cache
def code_version() -> str:
    """A hash of hyperflow's own source files: changes whenever the code does, git or not."""
    digest = hashlib.sha256(hyperflow.__version__.encode())
    for path in sorted(tracking.PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(tracking.PACKAGE_DIR).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def retrain_key(name: str, fingerprint: str, mode: str, settings: Mapping[str, Any]) -> str:
    payload = json.dumps({"model": name, "data": fingerprint, "code": code_version(), "mode": mode,
                          "settings": {k: str(v) for k, v in sorted(settings.items())}}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def finished_retrain(client: MlflowClient, experiment_id: str, key: str) -> str | None:
    """The id of a FINISHED retrain run with this key that promoted or rejected, if any."""
    runs = client.search_runs([experiment_id], f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
                              max_results=20)
    return next((r.info.run_id for r in runs if r.data.tags.get(OUTCOME_TAG) in ("promoted", "rejected")), None)


def _base_config(client: MlflowClient, config: RetrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The champion's training settings with the new data and the overrides (mode=search may start
    from defaults when there is no champion yet)."""
    champion = alias_version(client, config.model_name, CHAMPION) if _exists(client, config.model_name) else None
    if champion is None and config.mode == "champion":
        raise UsageError(f"model '{config.model_name}' has no champion to take settings from: promote a version "
                         f"first (hyperflow promote) or use mode=search")
    base = (run_config(client, version_run(client, client.get_model_version(config.model_name, champion)))
            if champion else build_config({}))
    changes: dict[str, Any] = {"experiment": config.experiment, "progress": False}
    if config.data:
        changes["data"] = newest_data(config.data)
    if config.target:
        changes["target"] = config.target
    return base.replace(**changes, **overrides)


def _exists(client: MlflowClient, name: str) -> bool:
    try:
        registered_model(client, name)
        return True
    except UsageError:
        return False


def retrain(config: RetrainConfig, overrides: Mapping[str, Any] | None = None, *,
            settle: float = 1.0) -> RetrainOutcome:
    """Skip, or lock, train (or search), register as challenger and promote through the gate."""
    client = MlflowClient()
    overrides = dict(overrides or {})
    if config.mode == "champion":
        registered_model(client, config.model_name)
    base = _base_config(client, config, overrides)
    dataset = load_data(base)  # bad data fails here, before any run
    settings = {**overrides, **({"max_evals": config.max_evals} if config.mode == "search" else {})}
    key = retrain_key(config.model_name, dataset.fingerprint, config.mode, settings)
    tags = {KEY_TAG: key, "hyperflow.model_name": config.model_name, **tracking.run_tags(dataset)}
    experiment_id = _experiment_id(config.experiment)
    previous = None if config.force else finished_retrain(client, experiment_id, key)
    if previous:
        return _skipped(config, base, key, tags, previous)
    if not _exists(client, config.model_name):
        client.create_registered_model(config.model_name)
    with RegistryLock(config.model_name, lease=config.lease, settle=settle, client=client) as lock:
        previous = None if config.force else finished_retrain(client, experiment_id, key)
        if previous:  # finished while we waited for the lock
            return _skipped(config, base, key, tags, previous)
        with tracking.tracked_run("retrain", experiment=config.experiment, tags=tags,
                                  run_name=f"retrain-{config.model_name}") as run:
            run_id = run.info.run_id
            lock.attach(run_id)
            tracking.log_params(run_id, {"model_name": config.model_name, "mode": config.mode,
                                         "resolved_data": base.data, "force": str(config.force),
                                         **({"max_evals": str(config.max_evals)} if config.mode == "search" else {})})
            version = (_search(config, base, run_id) if config.mode == "search" else _train(config, base, run_id))
            client.set_model_version_tag(config.model_name, version, "retrain_run_id", run_id)
            client.set_model_version_tag(config.model_name, version, "retrain_key", key)
            lock.check()
            promotion = promote(PromoteConfig(model_name=config.model_name, version=version, gate=config.gate,
                                              gate_rules=config.gate_rules, experiment=config.experiment),
                                parent_run_id=run_id, before_move=lock.check)
            outcome = "promoted" if promotion.promoted else "rejected"
            mlflow.set_tags({OUTCOME_TAG: outcome, "hyperflow.version_trained": version,
                             "hyperflow.promote_run_id": promotion.run_id})
    return RetrainOutcome(run_id, outcome, base.data, key, version, promotion)


def _experiment_id(name: str | None) -> str:
    if name:
        return mlflow.set_experiment(name).experiment_id
    return mlflow.tracking.fluent._get_experiment_id()  # MLflow's rule: env, active run, or default


def _skipped(config: RetrainConfig, base: TrainConfig, key: str, tags: dict[str, str],
             previous: str) -> RetrainOutcome:
    with tracking.tracked_run("retrain", experiment=config.experiment, run_name=f"retrain-{config.model_name}",
                              tags={**tags, OUTCOME_TAG: "skipped", "hyperflow.skipped_for": previous}) as run:
        tracking.log_params(run.info.run_id, {"model_name": config.model_name, "mode": config.mode,
                                              "resolved_data": base.data})
    return RetrainOutcome(run.info.run_id, "skipped", base.data, key, previous_run_id=previous)


def _train(config: RetrainConfig, base: TrainConfig, run_id: str) -> str:
    from hyperflow.workflows.train import train

    outcome = train(base.replace(model_name=config.model_name, log_model=True), parent_run_id=run_id)
    version = str(outcome.registered_version)
    MlflowClient().set_registered_model_alias(config.model_name, CHALLENGER, version)
    return version


def _search(config: RetrainConfig, base: TrainConfig, run_id: str) -> str:
    """A search in a thread of its own: MLflow's active run is per thread, and the search opens a
    top-level run; it is then linked under the retrain run."""
    from hyperflow.search.settings import build_search_config
    from hyperflow.workflows.search import SearchRunner

    runner = SearchRunner(build_search_config({"max_evals": config.max_evals, "model_name": config.model_name}),
                          base)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["outcome"] = runner.run()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="retrain-search", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    outcome = result["outcome"]
    MlflowClient().set_tag(outcome.run_id, "mlflow.parentRunId", run_id)
    if outcome.registered is None:
        raise RuntimeError(f"the search {outcome.run_id} registered no model: no trial finished")
    return outcome.registered[1]
