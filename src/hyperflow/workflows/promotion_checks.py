"""What a promotion checks before any run is written: the candidate version, its rows, the champion, whether
the candidate may replace it, and a gate that checks something. Fails closed (an unreadable registry stops it)."""

from __future__ import annotations

from dataclasses import dataclass

from hyperflow.config import PromoteConfig, TrainConfig
from hyperflow.errors import UsageError
from hyperflow.tracking.registry import (
    CHAMPION,
    Client,
    ModelVersion,
    alias_version,
    resolve_version,
    run_config,
    version_run,
)
from hyperflow.workflows.gate import Gate, build_gate, check_replaceable
from hyperflow.workflows.scoring import EvalRows, evaluation_rows


@dataclass
class Prepared:
    name: str
    version: str
    rows: EvalRows
    gate: Gate
    baseline: str | None  # the champion's version when we looked, None when there is none
    mv: ModelVersion
    train_config: TrainConfig | None


def first_promotion_refused(name: str, gate: Gate, task_metric: str) -> UsageError:
    return UsageError(
        f"model '{name}' has no champion yet, so the gate {gate.to_dict()} has nothing to compare "
        f"with and would check nothing: add an absolute threshold (e.g. "
        f"gate.{task_metric}.threshold=0.9) or pass allow_first=true to promote it unchecked"
    )


def prepare_promotion(config: PromoteConfig, client: Client) -> Prepared:
    """Everything that can fail on bad input or an unreadable registry, before any run is written."""
    mv = resolve_version(client, config.model_name, config.version)
    train_config = None
    try:  # the version's training settings: its rows by default, else the target and task of data=
        train_config = run_config(client, version_run(client, mv))
    except UsageError:
        if config.data is None:
            raise
    rows = evaluation_rows(train_config, config.data, config.target)
    baseline = alias_version(client, config.model_name, CHAMPION)
    if baseline is not None and baseline != str(mv.version):
        check_replaceable(client, mv, baseline, train_config)  # before the gate: its metrics follow the task
    gate = build_gate(config.gate, rows.task, config.gate_rules)
    if baseline is None and not gate.has_threshold and not config.allow_first:
        raise first_promotion_refused(config.model_name, gate, gate.rules[0].metric)
    return Prepared(config.model_name, str(mv.version), rows, gate, baseline, mv, train_config)
