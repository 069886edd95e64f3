"""Typed, frozen configurations that coerce and validate themselves: one per command."""

from hyperflow.config.search import SEARCH_KEYS, SearchConfig, build_search_config
from hyperflow.config.train import (GATE_HELP, PRESETS, PromoteConfig, RetrainConfig, TrainConfig, _choice, _f,
                                    build_config, build_promote_config, build_retrain_config, coerce,
                                    coerce_fields, field_defaults, field_help, load_yaml, unknown_setting)

__all__ = ["SEARCH_KEYS", "SearchConfig", "build_search_config", "GATE_HELP", "PRESETS", "PromoteConfig",
           "RetrainConfig", "TrainConfig", "_choice", "_f", "build_config", "build_promote_config",
           "build_retrain_config", "coerce", "coerce_fields", "field_defaults", "field_help", "load_yaml",
           "unknown_setting"]
