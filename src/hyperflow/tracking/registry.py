"""The model registry: which version is meant, the rows to score it on, its scores, and the gate.

Versions are always resolved to a number before anything else happens, so a promotion moves the alias
to the version it scored, never to "the latest". Models are loaded with ``mlflow.pyfunc`` and scored on
raw rows, exactly as they serve; the candidate and the champion see the same rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow.config import TrainConfig, build_config
from hyperflow.core.data import load_dataset
from hyperflow.errors import UsageError
from hyperflow.core.assembly import load_data

CHAMPION, CHALLENGER = "champion", "challenger"
# metric -> greater is better
DIRECTIONS = {"accuracy": True, "f1": True, "log_loss": False, "rmse": False, "mae": False, "r2": True,
              "dice": True}
TASK_METRICS = {"classification": ("accuracy", "f1", "log_loss"), "regression": ("rmse", "mae", "r2"),
                "segmentation": ("dice",)}  # the first one is the default gate's metric
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


# ------------------------------------------------------------------------------------------ versions

# Only these mean "there is no such thing". Everything else (a server's 5xx, PERMISSION_DENIED, a refused
# connection, a locked or unreadable database) is an error of the store, and the registry fails closed.
# Measured in MLflow 3.17: a missing model is RESOURCE_DOES_NOT_EXIST (sqlite and REST alike); a missing
# alias is INVALID_PARAMETER_VALUE ("Registered model alias ... not found"), the same code as a malformed
# name, so that case is confirmed against the model's alias list.
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class RegistryError(RuntimeError):
    """The registry (or tracking store) failed while we needed an answer; nothing was moved. Exit code 2."""

    exit_code = 2


def store_uri(uri: str | None = None) -> str:
    """The registry URI without credentials."""
    from urllib.parse import urlsplit, urlunsplit

    uri = uri or mlflow.get_registry_uri()
    parts = urlsplit(uri)
    if parts.password or parts.username:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An error as one short line (a refused connection as its errno line, not urllib3's whole repr)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno and " failed with exception " in text:
        text = f"{text.split(' failed with exception ')[0]} failed: {errno.group(0).strip()}"
    return text if len(text) <= limit else text[:limit] + "…"


def registry_error(exc: BaseException, doing: str, store: str = "model registry",
                   client: MlflowClient | None = None) -> RegistryError:
    if store == "tracking store":
        uri = mlflow.get_tracking_uri()
    else:
        uri = getattr(client, "_registry_uri", None) or mlflow.get_registry_uri()
    return RegistryError(f"the {store} {store_uri(uri)} failed while {doing}: {one_line(exc)}; "
                         f"nothing was moved: try again once it answers")


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, MlflowException) and exc.error_code == NOT_FOUND


def registered_model(client: MlflowClient, name: str) -> Any:
    """The registered model ``name``; a one-line UsageError when there is none, RegistryError when the
    registry cannot say."""
    try:
        return client.get_registered_model(name)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(f"unknown model '{name}': no registered model of that name in "
                             f"{store_uri()} (check model_name)") from None
        raise registry_error(exc, f"reading model '{name}'", client=client) from None


def model_exists(client: MlflowClient, name: str) -> bool:
    """Whether ``name`` is a registered model; RegistryError when the registry cannot say."""
    try:
        registered_model(client, name)
        return True
    except UsageError:
        return False


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version number an alias points at now, or None when the model or the alias does not exist.
    Any other failure raises RegistryError: an unreadable champion is never "no champion"."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        code = getattr(exc, "error_code", None)
        if code not in (NOT_FOUND, "INVALID_PARAMETER_VALUE"):
            raise registry_error(exc, f"reading alias '{alias}' of model '{name}'", client=client) from None
        failure = exc
    try:  # confirm: the model exists without that alias (and not a malformed request)
        aliases = registered_model(client, name).aliases or {}
    except UsageError:
        return None
    if alias in aliases:
        raise registry_error(failure, f"reading alias '{alias}' of model '{name}'", client=client) from None
    return None


def resolve_version(client: MlflowClient, name: str, version: str | None) -> ModelVersion:
    """A version by number or alias (default: the challenger), as the concrete version it is now."""
    registered_model(client, name)
    ref = str(version or CHALLENGER)
    if ref.isdigit():
        return model_version(client, name, ref)
    number = alias_version(client, name, ref)
    if number is None:
        raise UsageError(f"model '{name}' has no version with alias '{ref}': pass version=<number> or set "
                         f"the alias (a search sets '{CHALLENGER}')")
    return model_version(client, name, number)


def model_version(client: MlflowClient, name: str, number: str) -> ModelVersion:
    try:
        return client.get_model_version(name, number)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(f"model '{name}' has no version {number}") from None
        raise registry_error(exc, f"reading version {number} of model '{name}'", client=client) from None


def version_run(client: MlflowClient, mv: ModelVersion) -> Any:
    """The run that logged a version; a UsageError when it has none (e.g. registered from a path)."""
    if not mv.run_id:
        raise UsageError(f"model '{mv.name}' version {mv.version} has no run: its training data and settings "
                         f"are unknown, so pass data=<file with the target column> and target=<column>")
    try:
        return client.get_run(mv.run_id)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(f"model '{mv.name}' version {mv.version}: its run {mv.run_id} no longer exists; "
                             f"pass data= and target=") from None
        raise registry_error(exc, f"reading the run of version {mv.version} of model '{mv.name}'",
                             store="tracking store") from None


def run_config(client: MlflowClient, run: Any) -> TrainConfig:
    """The training settings of a run rebuilt from its params (``resolved.<key>`` wins; a search trial
    adds its sampled point to its search run's base settings)."""
    params = dict(run.data.params)
    parent = run.data.tags.get("mlflow.parentRunId")
    if run.data.tags.get("hyperflow.role") == "trial" and parent:
        params = {**client.get_run(parent).data.params, **params,
                  **{k: str(v) for k, v in json.loads(run.data.tags.get("hyperflow.trial_params", "{}")).items()}}
    values: dict[str, Any] = {k: v for k, v in params.items() if k in _TRAIN_FIELDS}
    values.update({k[9:]: v for k, v in params.items() if k.startswith("resolved.") and k[9:] in _TRAIN_FIELDS})
    kwargs = {k.split(".", 1)[1]: yaml.safe_load(v) for k, v in params.items() if k.startswith("model_kwargs.")}
    if kwargs:
        values["model_kwargs"] = kwargs
    values.update(experiment=None, run_name=None, model_name=None, progress=False, tensorboard=False)
    return build_config(values)


# ------------------------------------------------------------------------------------------ identity

_UNKNOWN = object()


@dataclass(frozen=True)
class Identity:
    """What a version predicts from what: compared before a version may replace the champion."""

    task: Any = _UNKNOWN  # classification | regression | segmentation
    target: Any = _UNKNOWN  # the target column (None for a built-in data set)
    features: Any = _UNKNOWN  # input column names (a sorted tuple), or the tensor input spec as JSON


def version_identity(client: MlflowClient, mv: ModelVersion, config: TrainConfig | None = None) -> Identity:
    """Task (run tag ``hyperflow.task``, or its search's for a trial), target (the run's settings) and
    input columns (the logged signature) of a version; what cannot be read stays unknown."""
    task: Any = _UNKNOWN
    target: Any = _UNKNOWN if config is None else config.target
    try:
        run = version_run(client, mv)
    except UsageError:  # no run, or it was deleted: only the signature can speak
        run = None
    if run is not None:
        task = run.data.tags.get("hyperflow.task") or _UNKNOWN
        parent = run.data.tags.get("mlflow.parentRunId")
        if task is _UNKNOWN and parent:
            try:
                task = client.get_run(parent).data.tags.get("hyperflow.task") or _UNKNOWN
            except Exception as exc:
                if not is_not_found(exc):
                    raise registry_error(exc, f"reading the search run of version {mv.version}",
                                         store="tracking store") from None
        if config is None:
            try:
                target = run_config(client, run).target
            except UsageError:
                pass
    return Identity(task, target, _signature_inputs(mv))


def _signature_inputs(mv: ModelVersion) -> Any:
    from mlflow.models import get_model_info

    try:
        info = get_model_info(f"models:/{mv.name}/{mv.version}")
    except Exception as exc:
        if is_not_found(exc) or isinstance(exc, (OSError, FileNotFoundError)):
            return _UNKNOWN
        raise registry_error(exc, f"reading the signature of version {mv.version} of model '{mv.name}'") from None
    inputs = info.signature.inputs if info.signature is not None else None
    if inputs is None:
        return _UNKNOWN
    if inputs.is_tensor_spec() or not inputs.has_input_names():
        return inputs.to_json()
    return tuple(sorted(inputs.input_names()))


def _names(columns: set[str]) -> str:
    shown = ", ".join(f"'{c}'" for c in sorted(columns)[:5])
    return shown + (f" and {len(columns) - 5} more" if len(columns) > 5 else "")


def check_replaceable(client: MlflowClient, candidate: ModelVersion, champion: str,
                      config: TrainConfig | None = None) -> None:
    """Refuse (UsageError) a candidate whose task, target or input columns differ from the champion's:
    scoring one against the other would compare different problems."""
    new = version_identity(client, candidate, config)
    old = version_identity(client, model_version(client, candidate.name, champion))
    known = lambda a, b: a is not _UNKNOWN and b is not _UNKNOWN  # noqa: E731
    problems = []
    if known(new.task, old.task) and new.task != old.task:
        problems.append(f"it is a {new.task} model and the champion a {old.task} model")
    if known(new.target, old.target) and new.target != old.target:
        show = lambda t: f"'{t}'" if t else "the built-in target"  # noqa: E731
        problems.append(f"it predicts {show(new.target)} and the champion {show(old.target)}")
    if known(new.features, old.features) and new.features != old.features:
        if isinstance(new.features, tuple) and isinstance(old.features, tuple):
            missing, extra = set(old.features) - set(new.features), set(new.features) - set(old.features)
            problems.append("its input columns differ from the champion's ("
                            + "; ".join(([f"lacks {_names(missing)}"] if missing else [])
                                        + ([f"adds {_names(extra)}"] if extra else [])) + ")")
        else:
            problems.append("its input differs from the champion's")
    if problems:
        raise UsageError(f"version {candidate.version} of '{candidate.name}' cannot replace champion version "
                         f"{champion}: {'; '.join(problems)}; register it under another model_name")


# ------------------------------------------------------------------------------------------ rows

@dataclass
class EvalRows:
    """Raw feature rows (a frame, or image arrays) and their true targets, as the model will see them."""

    features: Any
    target: np.ndarray
    task: str
    source: str  # what the rows are, for the record


def evaluation_rows(config: TrainConfig | None, data: str | None = None, target: str | None = None) -> EvalRows:
    """``data`` given: all its rows. Otherwise the test split of the run's data, reproduced from its settings."""
    if data:
        target = target or (config.target if config else None)
        dataset = load_dataset(data, target, config.task if config else None, seed=config.seed if config else 42)
        index = np.arange(len(dataset.raw_all[1] if isinstance(dataset.raw_all, tuple) else dataset.raw_all))
        source = f"{data} (all {len(index)} rows)"
    elif config is None:
        raise UsageError("no evaluation data: pass data=<file> (and target=<column>)")
    else:
        dataset = load_data(config)
        index = dataset.split_index["test"]
        if not len(index):
            raise UsageError(f"the training data {config.data} has no test split (test_size=0): pass data=<file>")
        source = f"{config.data} test split (seed {config.seed}, {len(index)} rows)"
    raw = dataset.raw_all
    if isinstance(raw, tuple):  # arrays: X raw, y as trained (codes, or standardised values)
        X, y = raw[0][index], raw[1][index]
        if dataset.task == "classification":
            y = np.asarray(dataset.classes, dtype=object)[y]
        elif dataset.task == "regression":
            y = y * dataset.target_std + dataset.target_mean
        return EvalRows(X, np.asarray(y), dataset.task, source)
    rows = raw.iloc[index].reset_index(drop=True)  # columns the model does not know are ignored by it
    return EvalRows(rows.drop(columns=[dataset.target]), rows[dataset.target].to_numpy(), dataset.task, source)


# ------------------------------------------------------------------------------------------ scores

def load_version(name: str, version: str) -> Any:
    """A version as a pyfunc model; RegistryError (one line, exit 2) when it cannot be loaded."""
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:
        raise RegistryError(f"cannot load version {version} of model '{name}' from {store_uri()}: "
                            f"{one_line(exc)}; nothing was moved") from None


def move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    try:
        client.set_registered_model_alias(name, alias, version)
    except Exception as exc:
        raise registry_error(exc, f"moving alias '{alias}' of model '{name}' to version {version}",
                             client=client) from None


def score(model: Any, rows: EvalRows) -> dict[str, float]:
    """Metrics of a pyfunc model on raw rows: accuracy, f1, log_loss (classes); rmse, mae, r2; dice."""
    out = model.predict(rows.features)
    y = rows.target
    if rows.task == "classification":
        from sklearn.metrics import f1_score

        truth, pred = y.astype(str), out["prediction"].to_numpy().astype(str)
        cols = [c for c in out.columns if c.startswith("probability_")]
        position = {c[len("probability_"):]: i for i, c in enumerate(cols)}
        probs = out[cols].to_numpy(dtype=float)
        p_true = np.array([probs[i, position[t]] if t in position else 0.0 for i, t in enumerate(truth)])
        return {"accuracy": float((truth == pred).mean()), "f1": float(f1_score(truth, pred, average="macro")),
                "log_loss": float(-np.log(np.clip(p_true, 1e-15, 1)).mean())}
    if rows.task == "regression":
        err = out["prediction"].to_numpy(float) - y.astype(float)
        ss_tot = float(((y - y.mean()) ** 2).sum())
        return {"rmse": float(np.sqrt((err ** 2).mean())), "mae": float(np.abs(err).mean()),
                "r2": 1 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")}
    pred = (np.asarray(out) > 0.5).reshape(len(y), -1)
    masks = y.reshape(len(y), -1) > 0.5
    inter, total = (pred & masks).sum(1), pred.sum(1) + masks.sum(1)
    return {"dice": float(np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1)).mean())}


# ------------------------------------------------------------------------------------------ gate

@dataclass(frozen=True)
class Rule:
    """One metric's bar, with MLflow's MetricThreshold meaning: an absolute threshold, and a minimum
    improvement over the champion (absolute and relative); the direction is known per metric."""

    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    @property
    def greater_is_better(self) -> bool:
        return DIRECTIONS[self.metric]


@dataclass
class Check:
    metric: str
    kind: str  # threshold | min_absolute_change | min_relative_change
    required: float
    value: float  # the candidate's value, or its improvement over the champion
    passed: bool

    def __str__(self) -> str:
        verb = "passed" if self.passed else "FAILED"
        return f"{self.metric} {self.kind}: {self.value:.4g} vs required {self.required:.4g} ({verb})"


_RULE_KEYS = ("threshold", "min_absolute_change", "min_relative_change")


@dataclass(frozen=True)
class Gate:
    rules: tuple[Rule, ...]

    @property
    def has_threshold(self) -> bool:
        """Whether any rule holds without a champion (an absolute threshold)."""
        return any(r.threshold is not None for r in self.rules)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {r.metric: {k: getattr(r, k) for k in _RULE_KEYS if getattr(r, k) is not None} for r in self.rules}

    def check(self, candidate: dict[str, float], champion: dict[str, float] | None) -> list[Check]:
        """Every check of every rule; improvement rules apply only when there is a champion."""
        checks = []
        for r in self.rules:
            sign = 1 if r.greater_is_better else -1
            value = candidate[r.metric]
            if r.threshold is not None:
                checks.append(Check(r.metric, "threshold", r.threshold, value,
                                    math.isfinite(value) and sign * (value - r.threshold) >= 0))
            if champion is None:
                continue
            gain = sign * (value - champion[r.metric])
            if r.min_absolute_change is not None:
                checks.append(Check(r.metric, "min_absolute_change", r.min_absolute_change, gain,
                                    math.isfinite(gain) and gain >= r.min_absolute_change - 1e-12))
            if r.min_relative_change is not None:
                rel = gain / abs(champion[r.metric]) if champion[r.metric] else (math.inf if gain > 0 else 0.0)
                checks.append(Check(r.metric, "min_relative_change", r.min_relative_change, rel,
                                    not math.isnan(rel) and rel >= r.min_relative_change - 1e-12))
        return checks


def build_gate(spec: str | dict | None, task: str, overrides: dict[str, str] | None = None) -> Gate:
    """A gate from a YAML file, inline YAML (``{accuracy: {threshold: 0.9}}``) or None, plus dotted
    overrides ``gate.<metric>.<rule>=value``. Default: not worse than the champion on the task's metric."""
    if isinstance(spec, str) and spec.strip():
        path = Path(spec)
        try:
            spec = yaml.safe_load(path.read_text() if path.suffix in (".yaml", ".yml") or path.is_file() else spec)
        except OSError:
            raise UsageError(f"gate file '{spec}' not found: pass a YAML file or inline YAML") from None
        except yaml.YAMLError:
            raise UsageError(f"gate '{spec}' is not valid YAML: e.g. gate='{{accuracy: {{threshold: 0.9}}}}'") \
                from None
    table: dict[str, Any] = dict(spec) if isinstance(spec, dict) else {}
    if spec not in (None, "") and not isinstance(spec, dict):
        raise UsageError("gate must map metrics to rules, e.g. {accuracy: {threshold: 0.9, min_absolute_change: 0}}")
    for key, value in (overrides or {}).items():
        metric, _, rule = key.removeprefix("gate.").partition(".")
        table.setdefault(metric, {})[rule] = value
    if not table:
        table = {TASK_METRICS[task][0]: {"min_absolute_change": 0.0}}
    rules = []
    for metric, bars in table.items():
        if metric not in TASK_METRICS[task]:
            raise UsageError(f"gate: unknown metric '{metric}' for a {task} model: use "
                             f"{', '.join(TASK_METRICS[task])}")
        if not isinstance(bars, dict) or set(bars) - set(_RULE_KEYS) or not bars:
            raise UsageError(f"gate: {metric} needs a mapping with any of {', '.join(_RULE_KEYS)}, got {bars!r}")
        try:
            values = {k: float(v) for k, v in bars.items()}
        except (TypeError, ValueError):
            raise UsageError(f"gate: {metric} rules must be numbers, got {bars!r}") from None
        if not all(math.isfinite(v) for v in values.values()):
            raise UsageError(f"gate: {metric} rules must be finite numbers, got {bars!r}")
        rules.append(Rule(metric, **values))
    return Gate(tuple(rules))

