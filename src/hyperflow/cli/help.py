"""What ``hyperflow --help`` and ``hyperflow <command> --help`` print: the commands, and each command's settings
made from its config fields (config/help.py), with the exit codes of promote and retrain."""

from __future__ import annotations

from dataclasses import fields

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


def train_help(command: str = "train") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    return "\n".join(lines + settings_lines(TrainConfig))


def search_help() -> str:
    lines = [
        "usage: hyperflow search [search settings] [training settings] [config=settings.yaml]",
        "",
        "search settings (default):",
    ]
    lines += settings_lines(SearchConfig)
    lines += ["", "data settings (default):", *settings_lines(TrainConfig, DATA_SETTINGS)]
    lines += [
        "",
        "every training setting (hyperflow train --help) sets the base of all trials; the space file says what varies.",
    ]
    return "\n".join(lines)


def _settings_help(command: str, cls: type, codes: str, extra: str = "") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    lines += settings_lines(cls, [f.name for f in fields(cls) if f.name != "gate_rules"])
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
    return _settings_help("promote", PromoteConfig, PROMOTE_CODES)


def retrain_help() -> str:
    return _settings_help(
        "retrain",
        RetrainConfig,
        RETRAIN_CODES,
        "  any training setting (hyperflow train --help) overrides the champion's, e.g. epochs=50",
    )


def predict_help() -> str:
    lines = ["usage: hyperflow predict model=<model URI> data=<rows.csv|.parquet> [out=predictions.csv]", ""]
    return "\n".join(lines + settings_lines(PredictConfig))
