"""Settings of the registry jobs: ``PromoteConfig`` (hyperflow promote) and ``RetrainConfig`` (hyperflow
retrain), typed and checked on construction like every config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from hyperflow.config.fields import SETTINGS_CONFIG, fields_of, unknown_setting
from hyperflow.config.search import MAX_EVALS
from hyperflow.config.settings import Settings, coerce
from hyperflow.config.train import ModelName, TrainConfig, build_config
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


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class PromoteConfig(Settings):
    """What ``hyperflow promote`` needs."""

    model_name: ModelName = Field(
        None, description="registered model (required)", json_schema_extra={"names": "a registered model"}
    )
    version: str | None = Field(
        None,
        description="version number or alias to validate (default: the one with alias challenger)",
        json_schema_extra={"names": "a version number or alias"},
    )
    data: str | None = Field(
        None,
        description="evaluation rows: a file with the target column or a built-in name "
        "(default: the test split of the data the version was trained on)",
        json_schema_extra={"names": "a file or a built-in name"},
    )
    target: str | None = Field(None, description="target column of data= (default: the version's training target)")
    gate: str | None = Field(None, description=GATE_HELP)
    gate_rules: dict = Field(
        default_factory=dict, description="gate.<metric>.<rule> values collected from the command line"
    )
    allow_first: bool = Field(False, description=ALLOW_FIRST_HELP)
    dry_run: bool = Field(False, description="decide and log, but move no alias and set no version tags")
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="times to re-score when the champion moves during the promotion",
        json_schema_extra={"range": "from 1 to 100"},
    )
    experiment: str | None = Field(
        None,
        description="MLflow experiment of the promote run (default: MLflow's current one)",
        json_schema_extra={"names": "an experiment name"},
    )

    @model_validator(mode="after")
    def _rules(self) -> PromoteConfig:
        _required_name(self, "promote into")
        return self


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class RetrainConfig(Settings):
    """What ``hyperflow retrain`` needs (training settings that override the champion's travel apart)."""

    model_name: ModelName = Field(
        None, description="registered model to retrain (required)", json_schema_extra={"names": "a registered model"}
    )
    data: str | None = Field(
        None,
        description="new data: a file, a folder or a glob (the newest file wins), or a built-in name "
        "(default: the champion's data)",
        json_schema_extra={"names": "a file, folder, glob or built-in name"},
    )
    target: str | None = Field(None, description="target column (default: the champion's)")
    mode: Literal[RETRAIN_MODES] = Field(
        "champion", description="champion = train with the champion's settings, search = a small search"
    )
    max_evals: int = Field(10, ge=1, le=MAX_EVALS, description="mode=search: trials")
    force: bool = Field(False, description="retrain even if a retrain of the same data and code already finished")
    gate: str | None = Field(None, description=GATE_HELP)
    gate_rules: dict = Field(
        default_factory=dict, description="gate.<metric>.<rule> values collected from the command line"
    )
    allow_first: bool = Field(
        False,
        description=ALLOW_FIRST_HELP + " (mode=search on a model with no champion); checked before anything is trained",
    )
    lease: float = Field(
        600.0,
        ge=10,
        le=7 * 86400,
        description="lock lease in seconds; the holder renews it every lease/3",
        json_schema_extra={"range": "from 10 seconds to 7 days (604800)"},
    )
    experiment: str | None = Field(
        None,
        description="MLflow experiment (default: MLflow's current one)",
        json_schema_extra={"names": "an experiment name"},
    )

    @model_validator(mode="after")
    def _rules(self) -> RetrainConfig:
        _required_name(self, "retrain")
        return self


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class PredictConfig(Settings):
    """What ``hyperflow predict`` needs."""

    model: str | None = Field(
        None, description="models:/<name>@champion, models:/<name>/<version> or runs:/<run id>/model (required)"
    )
    data: str | None = Field(None, description="rows to score (raw columns, any order, missing values allowed)")
    out: str | None = Field(
        None,
        description="output file (.csv or .parquet): the rows plus prediction (and probability_<class> columns) "
        "(default: the same rows as CSV on stdout)",
        json_schema_extra={"names": "a file"},
    )
    allow_missing_columns: bool = Field(
        False, description="true = impute feature columns the file lacks (false: refuse, naming them)"
    )

    @model_validator(mode="after")
    def _rules(self) -> PredictConfig:
        if not self.model or not self.data:
            raise UsageError(
                "predict needs model=<URI> and data=<file> (and optionally out=<file>; else CSV on stdout)"
            )
        return self


def _with_gate_rules(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``gate.<metric>.<rule>=value`` keys gathered into ``gate_rules``; the rest as they are."""
    rules = {k: str(v) for k, v in values.items() if k.startswith("gate.")}
    plain = {k: v for k, v in values.items() if not k.startswith("gate.")}
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
