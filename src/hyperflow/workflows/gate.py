"""The promotion gate: per-metric rules (an absolute threshold, a minimum improvement over the champion)
with MLflow's ``MetricThreshold`` meaning, built from YAML or ``gate.<metric>.<rule>=value`` settings; and
the guard that refuses a candidate for another problem (task, target, input columns) than the champion's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hyperflow import names
from hyperflow.config import TrainConfig
from hyperflow.config.files import DuplicateKey, read_text, safe_load
from hyperflow.core.data import Dataset
from hyperflow.errors import UsageError
from hyperflow.tracking.registry import Client, ModelVersion, model_version
from hyperflow.tracking.version_identity import UNKNOWN, Identity, version_identity

# metric -> greater is better
DIRECTIONS = {
    names.ACCURACY: True,
    names.F1: True,
    names.LOG_LOSS: False,
    names.RMSE: False,
    names.MAE: False,
    names.R2: True,
    names.DICE: True,
}
METRIC_RANGES = {
    names.ACCURACY: (0.0, 1.0),
    names.F1: (0.0, 1.0),
    names.DICE: (0.0, 1.0),
    names.LOG_LOSS: (0.0, math.inf),
    names.RMSE: (0.0, math.inf),
    names.MAE: (0.0, math.inf),
    names.R2: (-math.inf, 1.0),
}
TASK_METRICS = {
    "classification": (names.ACCURACY, names.F1, names.LOG_LOSS),
    "regression": (names.RMSE, names.MAE, names.R2),
    "segmentation": (names.DICE,),
}  # the first one is the default gate's metric


def quoted_list(items: set[str]) -> str:
    """The first five, quoted and sorted, then how many more."""
    shown = ", ".join(f"'{c}'" for c in sorted(items)[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _difference(old: tuple, new: tuple) -> str:
    """What ``new`` lacks and adds against ``old``."""
    missing, extra = set(old) - set(new), set(new) - set(old)
    return "; ".join(
        ([f"lacks {quoted_list(missing)}"] if missing else []) + ([f"adds {quoted_list(extra)}"] if extra else [])
    )


def check_replaceable(
    client: Client, candidate: ModelVersion, champion: str, config: TrainConfig | None = None
) -> None:
    """Refuse (UsageError) a candidate whose task, target or input columns differ from the champion's:
    scoring one against the other would compare different problems."""
    problems = identity_problems(
        version_identity(client, candidate, config),
        version_identity(client, model_version(client, candidate.name, champion)),
    )
    if problems:
        raise UsageError(
            f"version {candidate.version} of '{candidate.name}' cannot replace champion version "
            f"{champion}: {'; '.join(problems)}; register it under another model_name"
        )


def check_data_fits(client: Client, name: str, champion: str, dataset: Dataset, target: str | None) -> None:
    """Refuse (UsageError) data whose model could never replace the champion (another task, target or input
    columns), before a retrain trains and registers one."""
    pre = dataset.preprocessor
    classes = tuple(sorted(str(c) for c in dataset.classes)) if dataset.classes else UNKNOWN
    new = Identity(dataset.task, target, tuple(sorted(pre.columns)) if pre.kind == "table" else UNKNOWN, classes)
    problems = identity_problems(new, version_identity(client, model_version(client, name, champion)))
    if problems:
        raise UsageError(
            f"a model of data '{dataset.source}' could not replace champion version {champion} of "
            f"'{name}': {'; '.join(problems)}; give data with the champion's columns and target, or "
            f"train it under another model_name"
        )


def identity_problems(new: Identity, old: Identity) -> list[str]:
    """What makes ``new`` another problem than ``old``, in words ("it" is ``new``); unknown parts pass."""
    known = lambda a, b: a is not UNKNOWN and b is not UNKNOWN  # noqa: E731
    problems = []
    if known(new.task, old.task) and new.task != old.task:
        problems.append(f"it is a {new.task} model and the champion a {old.task} model")
    if known(new.target, old.target) and new.target != old.target:
        show = lambda t: f"'{t}'" if t else "the built-in target"  # noqa: E731
        problems.append(f"it predicts {show(new.target)} and the champion {show(old.target)}")
    if known(new.features, old.features) and new.features != old.features:
        if isinstance(new.features, tuple) and isinstance(old.features, tuple):
            problems.append(f"its input columns differ from the champion's ({_difference(old.features, new.features)})")
        else:
            problems.append("its input differs from the champion's")
    if known(new.classes, old.classes) and new.classes != old.classes:
        problems.append(f"its classes differ from the champion's ({_difference(old.classes, new.classes)})")
    return problems


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
                checks.append(
                    Check(
                        r.metric,
                        "threshold",
                        r.threshold,
                        value,
                        math.isfinite(value) and sign * (value - r.threshold) >= 0,
                    )
                )
            if champion is None:
                continue
            gain = sign * (value - champion[r.metric])
            if r.min_absolute_change is not None:
                checks.append(
                    Check(
                        r.metric,
                        "min_absolute_change",
                        r.min_absolute_change,
                        gain,
                        math.isfinite(gain) and gain >= r.min_absolute_change - 1e-12,
                    )
                )
            if r.min_relative_change is not None:
                rel = gain / abs(champion[r.metric]) if champion[r.metric] else (math.inf if gain > 0 else 0.0)
                checks.append(
                    Check(
                        r.metric,
                        "min_relative_change",
                        r.min_relative_change,
                        rel,
                        not math.isnan(rel) and rel >= r.min_relative_change - 1e-12,
                    )
                )
        return checks


def build_gate(spec: str | dict | None, task: str, overrides: dict[str, str] | None = None) -> Gate:
    """A gate from a YAML file, inline YAML (``{accuracy: {threshold: 0.9}}``) or None, plus dotted
    overrides ``gate.<metric>.<rule>=value``. Default: not worse than the champion on the task's metric."""
    if isinstance(spec, str) and spec.strip():
        path = Path(spec)
        try:
            is_file = path.suffix in (".yaml", ".yml") or path.is_file()
            spec = safe_load(read_text(path, "gate file") if is_file else spec)
        except DuplicateKey as exc:
            raise UsageError(f"gate '{spec}': {exc}") from None
        except OSError:
            raise UsageError(f"gate file '{spec}' not found: pass a YAML file or inline YAML") from None
        except yaml.YAMLError:
            raise UsageError(f"gate '{spec}' is not valid YAML: e.g. gate='{{accuracy: {{threshold: 0.9}}}}'") from None
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
            raise UsageError(f"gate: unknown metric '{metric}' for a {task} model: use {', '.join(TASK_METRICS[task])}")
        if not isinstance(bars, dict) or set(bars) - set(_RULE_KEYS) or not bars:
            raise UsageError(f"gate: {metric} needs a mapping with any of {', '.join(_RULE_KEYS)}, got {bars!r}")
        try:
            if any(isinstance(v, bool) for v in bars.values()):  # YAML's yes/true: not a number for MLflow either
                raise TypeError
            values = {k: float(v) for k, v in bars.items()}
        except (TypeError, ValueError):
            raise UsageError(f"gate: {metric} rules must be numbers, got {bars!r}") from None
        if not all(math.isfinite(v) for v in values.values()):
            raise UsageError(f"gate: {metric} rules must be finite numbers, got {bars!r}")
        for kind, value in values.items():
            _check_range(metric, kind, value)
        rules.append(Rule(metric, **values))
    return Gate(tuple(rules))


def _span(low: float, high: float) -> str:
    return (
        f"at least {low:g}"
        if not math.isfinite(high)
        else f"at most {high:g}"
        if not math.isfinite(low)
        else f"from {low:g} to {high:g}"
    )


def _check_range(metric: str, kind: str, value: float) -> None:
    """Refuse (UsageError) a rule's value outside what it can mean: a threshold outside the metric's range (a
    bar no model can meet, or all do); an improvement below 0 (MLflow's MetricThreshold asks for a positive
    one; 0 here means "not worse") or larger than the metric's whole range; a relative improvement outside 0-1,
    as MLflow's MetricThreshold (0.02 = 2% better)."""
    low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    if kind == "threshold":
        allowed, what = (low, high), f"{metric} is {_span(low, high)}"
    elif kind == "min_absolute_change":
        allowed = (0.0, high - low)
        what = "an improvement over the champion is " + (
            f"from 0 (not worse) to {high - low:g}, the whole range of {metric}"
            if math.isfinite(high - low)
            else "at least 0 (0: not worse)"
        )
    else:
        allowed, what = (0.0, 1.0), "a relative improvement over the champion is from 0 to 1 (0.02: 2% better)"
    if not allowed[0] <= value <= allowed[1]:
        raise UsageError(f"gate: {metric} {kind} {value:g} is out of its range: {what}")
