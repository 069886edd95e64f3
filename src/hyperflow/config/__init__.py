"""Typed, frozen configurations, one per command, that coerce and validate themselves on construction:
``train`` (TrainConfig, presets), ``search`` (SearchConfig), ``jobs`` (PromoteConfig, RetrainConfig), and
``fields`` (the ``setting`` field helper, coercion of raw values, YAML files, help texts)."""

from hyperflow.config.fields import (
    coerce,
    coerce_fields,
    field_defaults,
    field_help,
    load_yaml,
    setting,
    unknown_setting,
)
from hyperflow.config.jobs import GATE_HELP, PromoteConfig, RetrainConfig, build_promote_config, build_retrain_config
from hyperflow.config.search import SEARCH_KEYS, SearchConfig, build_search_config
from hyperflow.config.train import PRESETS, TrainConfig, build_config

__all__ = [
    "GATE_HELP",
    "PRESETS",
    "SEARCH_KEYS",
    "PromoteConfig",
    "RetrainConfig",
    "SearchConfig",
    "TrainConfig",
    "build_config",
    "build_promote_config",
    "build_retrain_config",
    "build_search_config",
    "coerce",
    "coerce_fields",
    "field_defaults",
    "field_help",
    "load_yaml",
    "setting",
    "unknown_setting",
]
