"""Typed, frozen configurations, one pydantic dataclass per command, that validate themselves on construction:
``train`` (TrainConfig, presets; ``train_rules`` between its settings), ``search`` (SearchConfig), ``jobs``
(PromoteConfig, RetrainConfig, PredictConfig); ``fields`` (what every config is built on, ``coerce`` of one raw value),
``messages`` (pydantic's errors as one line), ``help`` (the --help text from the fields), ``files`` (YAML)."""

from hyperflow.config.fields import field_defaults, unknown_setting
from hyperflow.config.jobs import (
    GATE_HELP,
    PredictConfig,
    PromoteConfig,
    RetrainConfig,
    build_promote_config,
    build_retrain_config,
)
from hyperflow.config.search import SEARCH_KEYS, SearchConfig, build_search_config
from hyperflow.config.settings import coerce
from hyperflow.config.train import PRESETS, TrainConfig, build_config

__all__ = [
    "GATE_HELP",
    "PRESETS",
    "SEARCH_KEYS",
    "PredictConfig",
    "PromoteConfig",
    "RetrainConfig",
    "SearchConfig",
    "TrainConfig",
    "build_config",
    "build_promote_config",
    "build_retrain_config",
    "build_search_config",
    "coerce",
    "field_defaults",
    "unknown_setting",
]
