"""Settings of the registry jobs: ``PromoteConfig`` (hyperflow promote) and ``RetrainConfig`` (hyperflow
retrain), coerced and validated on construction like every config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hyperflow.config.fields import (
    _COMMAND_OF,
    check_choice,
    check_model_name,
    coerce,
    coerce_fields,
    fields_of,
    setting,
    unknown_setting,
)
from hyperflow.config.search import MAX_EVALS
from hyperflow.config.train import TrainConfig, build_config
from hyperflow.errors import UsageError

GATE_HELP = (
    "gate: YAML file or inline YAML {metric: {threshold, min_absolute_change, min_relative_change}} "
    "(default: not worse than the champion on the task's main metric); single rules as "
    "gate.<metric>.<rule>=value"
)
ALLOW_FIRST_HELP = (
    "with no champion yet there is nothing to compare with: the first promotion needs an absolute "
    "threshold in the gate (gate.accuracy.threshold=0.9) or allow_first=true, which promotes it "
    "unchecked"
)
RETRAIN_MODES = ("champion", "search")


def _required_name(c: Any, what: str) -> None:
    if not c.model_name:
        raise UsageError(f"model_name is required: the registered model to {what}")
    check_model_name(c.model_name)


@dataclass(frozen=True)
class PromoteConfig:
    """What ``hyperflow promote`` needs. Coerced and validated on construction."""

    model_name: str | None = setting(None, "registered model (required)", names="a registered model")
    version: str | None = setting(
        None,
        "version number or alias to validate (default: the one with alias challenger)",
        names="a version number or alias",
    )
    data: str | None = setting(
        None,
        "evaluation rows: a file with the target column or a built-in name "
        "(default: the test split of the data the version was trained on)",
        names="a file or a built-in name",
    )
    target: str | None = setting(None, "target column of data= (default: the version's training target)")
    gate: str | None = setting(None, GATE_HELP)
    gate_rules: dict = setting({}, "gate.<metric>.<rule> values collected from the command line")
    allow_first: bool = setting(False, ALLOW_FIRST_HELP)
    dry_run: bool = setting(False, "decide and log, but move no alias and set no version tags")
    max_attempts: int = setting(3, "times to re-score when the champion moves during the promotion")
    experiment: str | None = setting(
        None, "MLflow experiment of the promote run (default: MLflow's current one)", names="an experiment name"
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        _required_name(self, "promote into")
        if not 1 <= self.max_attempts <= 100:
            raise UsageError(f"max_attempts must be from 1 to 100, got {self.max_attempts}")


@dataclass(frozen=True)
class RetrainConfig:
    """What ``hyperflow retrain`` needs (training settings that override the champion's travel apart)."""

    model_name: str | None = setting(None, "registered model to retrain (required)", names="a registered model")
    data: str | None = setting(
        None,
        "new data: a file, a folder or a glob (the newest file wins), or a built-in name "
        "(default: the champion's data)",
        names="a file, folder, glob or built-in name",
    )
    target: str | None = setting(None, "target column (default: the champion's)")
    mode: str = setting("champion", "champion (train with the champion's settings) | search (a small search)")
    max_evals: int = setting(10, "mode=search: trials")
    force: bool = setting(False, "retrain even if a retrain of the same data and code already finished")
    gate: str | None = setting(None, GATE_HELP)
    gate_rules: dict = setting({}, "gate.<metric>.<rule> values collected from the command line")
    allow_first: bool = setting(
        False, ALLOW_FIRST_HELP + " (mode=search on a model with no champion); checked before anything is trained"
    )
    lease: float = setting(600.0, "lock lease in seconds; the holder renews it every lease/3")
    experiment: str | None = setting(
        None, "MLflow experiment (default: MLflow's current one)", names="an experiment name"
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        _required_name(self, "retrain")
        check_choice("mode", self.mode, RETRAIN_MODES)
        if not 1 <= self.max_evals <= MAX_EVALS:
            raise UsageError(f"max_evals must be from 1 to {MAX_EVALS}, got {self.max_evals}")
        if not (10 <= self.lease <= 7 * 86400):
            raise UsageError(f"lease must be from 10 seconds to 7 days (604800), got {self.lease}")


def _with_gate_rules(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``gate.<metric>.<rule>=value`` keys gathered into ``gate_rules``; the rest as they are."""
    rules = {k: str(v) for k, v in values.items() if k.startswith("gate.")}
    plain = {k: v for k, v in values.items() if not k.startswith("gate.")}
    for key in plain:
        if key not in fields_of(cls):
            raise unknown_setting(key, fields_of(cls), _COMMAND_OF[cls.__name__])
    gate_rules = coerce("gate_rules", plain.get("gate_rules", {}), cls)
    return {**plain, "gate_rules": {**gate_rules, **rules}}


def build_promote_config(values: Mapping[str, Any]) -> PromoteConfig:
    return PromoteConfig(**_with_gate_rules(PromoteConfig, values))


def build_retrain_config(values: Mapping[str, Any]) -> tuple[RetrainConfig, dict[str, Any]]:
    """The retrain settings, and the training settings that override the champion's (validated now, so an
    unknown or invalid training setting fails before anything runs)."""
    own = {k: v for k, v in values.items() if k in fields_of(RetrainConfig) or k.startswith("gate.")}
    overrides = {k: v for k, v in values.items() if k not in own}
    for key in overrides:
        if key not in fields_of(TrainConfig):
            raise unknown_setting(key, {*fields_of(TrainConfig), *fields_of(RetrainConfig)}, "retrain")
    config = RetrainConfig(**_with_gate_rules(RetrainConfig, own))
    build_config(overrides)
    return config, overrides
