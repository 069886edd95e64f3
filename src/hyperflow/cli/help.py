"""What ``hyperflow --help`` and ``hyperflow <command> --help`` print: the commands, and each command's settings
made from its config fields (config/help.py), with the exit codes of promote and retrain."""

from __future__ import annotations

from dataclasses import fields
from typing import NamedTuple

from hyperflow.config import PredictConfig, PromoteConfig, RetrainConfig, TrainConfig
from hyperflow.config.help import settings_lines
from hyperflow.config.search import SearchConfig
from hyperflow.config.train import DATA_SETTINGS

USAGE = """usage: hyperflow <command> [key=value ...]

commands:
  train     train one model and track it in MLflow (hyperflow train --help lists the settings)
  lr-find   LR range test: suggest a learning rate and a (min, max) range (same settings as train; also lr_find)
  search    hyperparameter search as nested MLflow runs (hyperflow search --help)
  promote   score a version against the champion on the same rows; move alias champion if it passes the gate
  retrain   scheduled retraining: newest data, the champion's settings, then the promotion gate (locked, idempotent)
  predict   batch scoring: hyperflow predict model=models:/<name>@champion data=new.csv out=preds.csv

Settings can also come from a YAML file: config=settings.yaml (command-line values win).
The tracking store is MLflow's default (sqlite:///mlflow.db here) unless MLFLOW_TRACKING_URI is set."""


def _own_keys(cls: type) -> tuple[str, ...]:
    """The settings a user gives (gate_rules is filled from gate.<metric>.<rule>=value)."""
    return tuple(f.name for f in fields(cls) if f.name != "gate_rules")


class Section(NamedTuple):
    """One block of settings in a command's --help (and in docs/settings.md): a title, a config, its keys."""

    title: str
    config: type
    keys: tuple[str, ...]


SEARCH_NOTE = (
    "every training setting (hyperflow train --help) sets the base of all trials; the space file says what varies."
)
RETRAIN_NOTE = "any training setting (hyperflow train --help) overrides the champion's, e.g. epochs=50"

# Each command's settings as --help lists them; lr-find takes train's.
SECTIONS: dict[str, tuple[Section, ...]] = {
    "train": (Section("settings", TrainConfig, _own_keys(TrainConfig)),),
    "search": (
        Section("search settings", SearchConfig, _own_keys(SearchConfig)),
        Section("data settings", TrainConfig, DATA_SETTINGS),
    ),
    "promote": (Section("settings", PromoteConfig, _own_keys(PromoteConfig)),),
    "retrain": (Section("settings", RetrainConfig, _own_keys(RetrainConfig)),),
    "predict": (Section("settings", PredictConfig, _own_keys(PredictConfig)),),
}


def _sections_lines(command: str) -> list[str]:
    lines: list[str] = []
    for section in SECTIONS[command]:
        block = [f"{section.title} (default):", *settings_lines(section.config, section.keys)]
        lines += ["", *block] if lines else block
    return lines


def train_help(command: str = "train") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", ""]
    return "\n".join(lines + _sections_lines("train"))


def search_help() -> str:
    lines = ["usage: hyperflow search [search settings] [training settings] [config=settings.yaml]", ""]
    return "\n".join([*lines, *_sections_lines("search"), "", SEARCH_NOTE])


def _settings_help(command: str, codes: str, extra: str = "") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", *_sections_lines(command)]
    return "\n".join(lines + ([extra] if extra else []) + ["", f"exit codes: {codes}"])


PROMOTE_CODES = (
    "0 passed (champion moved; or dry run; or already champion), 1 failed, 2 bad input (also: no champion "
    "and neither a threshold nor allow_first, a candidate for another task/target/columns, a registry "
    "or tracking store that fails; nothing moved), "
    "3 rejected by the gate (alias unchanged), 5 the champion kept moving (nothing moved) or another promotion "
    "moved it on right after (it names the champion), 130 interrupted"
)

RETRAIN_CODES = (
    "0 promoted or skipped (same data and code already done), 1 failed, 2 bad input (or a registry or "
    "store that fails; nothing moved), 3 rejected "
    "by the gate, 4 another retrain holds the lock (or took it over from this one), 5 the champion kept moving, "
    "130 interrupted"
)


def promote_help() -> str:
    return _settings_help("promote", PROMOTE_CODES)


def retrain_help() -> str:
    return _settings_help("retrain", RETRAIN_CODES, f"  {RETRAIN_NOTE}")


def predict_help() -> str:
    lines = ["usage: hyperflow predict model=<model URI> data=<rows.csv|.parquet> [out=<preds.csv|.parquet>]", ""]
    return "\n".join(lines + settings_lines(PredictConfig, SECTIONS["predict"][0].keys))
