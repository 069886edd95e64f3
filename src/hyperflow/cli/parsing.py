"""The command line's words → the config objects a command's workflow takes: ``key=value``, ``--key=value`` and
``--key value``, a ``config=`` YAML file under the command line, MLproject parameters left at their defaults.
Which settings a command takes, their types and their defaults are the config fields'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hyperflow.config import (
    PredictConfig,
    PromoteConfig,
    RetrainConfig,
    TrainConfig,
    build_config,
    build_promote_config,
    build_retrain_config,
    coerce,
    field_defaults,
    unknown_setting,
)
from hyperflow.config.search import SEARCH_KEYS, SearchConfig, build_search_config
from hyperflow.config.train import read_config_file
from hyperflow.errors import UsageError


def parse_settings(tokens: Sequence[str]) -> dict[str, str]:
    """``key=value``, ``--key=value`` and ``--key value`` into a dict (later values win)."""
    out: dict[str, str] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        key, eq, value = token.lstrip("-").partition("=")
        if not eq:
            if token.startswith("--") and i + 1 < len(tokens):
                value, i = tokens[i + 1], i + 1
            else:
                raise UsageError(f"unexpected argument '{token}': pass settings as key=value, e.g. epochs=20")
        out[key.replace("-", "_")] = value
        i += 1
    return out


# The config classes whose settings each command takes, in the order a key is looked up.
CONFIGS: dict[str, tuple[type, ...]] = {
    "train": (TrainConfig,),
    "lr-find": (TrainConfig,),
    "search": (SearchConfig, TrainConfig),
    "promote": (PromoteConfig,),
    "retrain": (RetrainConfig, TrainConfig),
    "predict": (PredictConfig,),
}

# Whose defaults an MLproject parameter left at its default is compared with. retrain's training settings
# override the champion's, so no default stands for "unset" there: they are never dropped.
DEFAULTS_OF: dict[str, tuple[type, ...]] = {**CONFIGS, "retrain": (RetrainConfig,)}


def command_name(word: str) -> str | None:
    """The command a word names: ``lr_find`` and ``lr-find`` (any ``_``/``-`` spelling) alike."""
    name = word.replace("_", "-")
    return name if name in CONFIGS else None


def drop_defaults(command: str, settings: dict[str, str]) -> dict[str, str]:
    """Under ``mlflow run`` every declared parameter arrives, given or not; values equal to the default of
    the entry point's OWN config are dropped so that a config file can set them (MLproject defaults equal
    those defaults, tests/test_project.py checks it)."""
    kept = {}
    for key, value in settings.items():
        cls = next((c for c in DEFAULTS_OF[command] if key in c.__dataclass_fields__), None)
        if value in ("", "''") and cls is not None and field_defaults(cls)[key] is None:
            continue  # a parameter left at its empty default: unset (an empty value given by hand is refused)
        if key == "config" or cls is None or coerce(key, value, cls) != field_defaults(cls)[key]:
            kept[key] = value
    return {k: v for k, v in kept.items() if not (k == "config" and v in ("", "''"))}


@dataclass
class Invocation:
    """A command line resolved into the config objects its workflow takes (nothing run, nothing read
    from MLflow): ``parse`` builds it, the ``cmd_*`` functions run it."""

    command: str
    train: TrainConfig | None = None
    search: SearchConfig | None = None
    promote: PromoteConfig | None = None
    retrain: RetrainConfig | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # retrain: training settings over the champion's
    predict: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = frozenset()  # the settings the user set (command line, config file): a resume
    # takes every other one from the search it continues

    @property
    def experiment(self) -> str | None:
        own = self.promote or self.retrain or self.train
        return getattr(own, "experiment", None)


def known_keys(command: str) -> set[str]:
    return {f.name for cls in CONFIGS[command] for f in fields(cls)}


def check_keys(command: str, settings: dict[str, Any]) -> None:
    """Refuse a setting no config of this command has, suggesting the closest setting of THIS command."""
    known = known_keys(command)
    for key in settings:
        if key not in known and not (command in ("promote", "retrain") and key.startswith("gate.")):
            raise unknown_setting(key, known, command)


def invocation_of(command: str, settings: dict[str, Any]) -> Invocation:
    """Settings (``config=FILE`` included; command-line values win over the file) → config objects. The one
    place a config file is merged: every command's configs are built from ``merged``."""
    settings = dict(settings)
    config_file = settings.pop("config", None) or None
    from_file = read_config_file(config_file) if config_file else {}
    merged = {**from_file, **settings}
    check_keys(command, merged)
    if command in ("train", "lr-find"):
        return Invocation(command, train=build_config(merged))
    if command == "search":
        return Invocation(
            command,
            given=frozenset(merged),
            search=build_search_config({k: v for k, v in merged.items() if k in SEARCH_KEYS}),
            train=build_config({k: v for k, v in merged.items() if k not in SEARCH_KEYS}),
        )
    if command == "promote":
        return Invocation(command, promote=build_promote_config(merged))
    if command == "retrain":
        config, overrides = build_retrain_config(merged)
        return Invocation(command, retrain=config, overrides=overrides)
    return Invocation(command, predict=asdict(PredictConfig(**merged)))


def parse(argv: Sequence[str], *, from_mlproject: bool = False) -> Invocation:
    """``[command, key=value, ...]`` → an Invocation: what ``main`` and every MLproject step run."""
    if not argv or command_name(argv[0]) is None:
        raise UsageError(f"unknown command '{argv[0] if argv else ''}': choose one of {', '.join(CONFIGS)}")
    command = command_name(argv[0])
    settings = parse_settings(argv[1:])
    if from_mlproject:
        settings = drop_defaults(command, settings)
    return invocation_of(command, settings)
