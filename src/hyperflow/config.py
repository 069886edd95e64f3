"""Typed, frozen training configuration: defaults < preset < YAML file < command-line overrides.

One flat dataclass (nanoGPT style): every field is a command-line key (``epochs=50``), a YAML key
and an MLflow param of the same name, so a run's params read like the command that made it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, get_type_hints

import yaml

from hyperflow.errors import UsageError

TASKS = ("classification", "regression", "segmentation")
LOSSES = ("cross_entropy", "mse", "l1", "huber", "dice", "bce_dice")
OPTIMIZERS = ("sgd", "adam", "adamw", "rprop")
SCHEDULES = ("constant", "onecycle", "cyclic", "cosine")
CYCLE_MODES = ("triangular", "triangular2", "exp_range")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "leaky_relu")


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text (shown by ``hyperflow train --help``)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Validated on construction by :func:`validate`."""

    # data
    data: str = _f("digits", "built-in name (digits, breast_cancer, wine, diabetes, shapes) or a CSV/Parquet/NPZ path")
    target: str | None = _f(None, "target column of a CSV/Parquet file")
    task: str | None = _f(None, "classification | regression | segmentation (default: inferred from the data)")
    split_column: str | None = _f(None, "column with train/val/test per row (default: a seeded random split)")
    val_size: float = _f(0.15, "fraction of rows for validation")
    test_size: float = _f(0.15, "fraction of rows for the final test")
    # model
    model: str = _f("mlp", "mlp | cnn | unet | package.module:function (your own nn.Module factory)")
    width: int = _f(256, "hidden units per MLP layer")
    depth: int = _f(2, "hidden layers of the MLP")
    channels: int = _f(16, "base channels of cnn / unet")
    dropout: float = _f(0.0, "dropout probability")
    activation: str = _f("relu", "relu | gelu | silu | tanh | leaky_relu")
    batch_norm: bool = _f(False, "batch normalisation after each hidden layer")
    model_kwargs: dict = _f({}, "extra keyword arguments for a module:function model (YAML mapping)")
    # loss
    loss: str | None = _f(None, "cross_entropy | mse | l1 | huber | dice | bce_dice (default follows the task)")
    label_smoothing: float = _f(0.0, "label smoothing for cross_entropy")
    # optimizer
    preset: str | None = _f(None, "literature preset: " + ", ".join(["adam", "sgd_onecycle", "adamw_cosine", "rprop"]))
    optimizer: str = _f("adam", "sgd | adam | adamw | rprop")
    lr: float | str = _f(3e-3, "learning rate (the peak lr of onecycle / cyclic unless max_lr is set); "
                               "auto = run the LR range test first and use its suggestion")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum for SGD")
    beta1: float = _f(0.9, "Adam/AdamW beta1")
    beta2: float = _f(0.999, "Adam/AdamW beta2")
    weight_decay: float = _f(0.0, "L2 penalty (SGD, Adam) or decoupled weight decay (AdamW)")
    # schedule
    schedule: str = _f("onecycle", "constant | onecycle | cyclic | cosine")
    max_lr: float | str | None = _f(None, "peak lr of onecycle / upper bound of cyclic (default: lr); "
                                          "auto = the top of the LR range test's range")
    base_lr: float | str | None = _f(None, "lower bound of cyclic (default: max_lr / 4); auto = the bottom of "
                                           "the LR range test's range")
    pct_start: float = _f(0.3, "onecycle: fraction of steps spent warming up")
    div_factor: float = _f(25.0, "onecycle: initial lr = max_lr / div_factor")
    final_div_factor: float = _f(1e4, "onecycle: final lr = initial lr / final_div_factor")
    cycle_mode: str = _f("triangular", "cyclic: triangular | triangular2 | exp_range")
    cycle_epochs: float = _f(4.0, "cyclic: length of one full cycle (up and down) in epochs")
    cycle_gamma: float = _f(0.99, "cyclic exp_range: amplitude decay per step")
    min_lr: float = _f(0.0, "cosine: final lr")
    warmup_epochs: float = _f(0.0, "constant / cosine: linear warm-up length in epochs")
    # LR range test (lr_find, and lr/max_lr/base_lr=auto)
    start_lr: float = _f(1e-7, "LR range test: first lr of the sweep")
    end_lr: float = _f(1.0, "LR range test: last lr of the sweep")
    num_iter: int = _f(100, "LR range test: mini-batches in the sweep")
    sweep: str = _f("exp", "LR range test: exp (lr grows exponentially) or linear")
    suggestion: str = _f("descent", "LR range test rule: descent (where the loss has done 20% of its fall) | "
                                    "valley | steep | minimum (lr at the minimum / 10)")
    repeats: int = _f(1, "LR range test: sweeps from the same start with different batch orders (a band)")
    sweep_loss: str = _f("train", "LR range test: train (each batch's loss) or val (a fixed validation batch)")
    # loop
    epochs: int = _f(30, "training epochs")
    batch_size: int = _f(64, "mini-batch size")
    patience: int = _f(0, "early stopping: epochs without val_loss improvement (0 = off)")
    min_delta: float = _f(0.0, "early stopping: smallest val_loss decrease that counts")
    restore_best: bool = _f(True, "end with the weights of the best val_loss epoch")
    grad_clip: float = _f(0.0, "clip the gradient norm to this value (0 = off)")
    seed: int = _f(42, "seed for the data split, initialisation and batch order")
    deterministic: bool = _f(False, "use only deterministic torch algorithms (slower on GPU)")
    threads: int = _f(1, "torch intra-op threads (1 is fastest for small models; 0 = torch default)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    progress: bool = _f(True, "tqdm progress bar (shown on a terminal only)")
    # tracking
    experiment: str | None = _f(None, "MLflow experiment name (default: MLflow's current one)")
    run_name: str | None = _f(None, "MLflow run name")
    model_name: str | None = _f(None, "register the trained model under this name")
    log_model: bool = _f(True, "log the model (with its preprocessing) as an MLflow model")
    tensorboard: bool = _f(False, "also write TensorBoard event files and log them as an artifact")
    flush_secs: float = _f(1.0, "send buffered metrics to MLflow at most this often (0 = every epoch)")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some fields changed."""
        return build_config(dataclasses.asdict(self) | changes)

    @property
    def needs_lr_find(self) -> bool:
        """Whether lr, max_lr or base_lr is ``auto`` (found by the LR range test before training)."""
        return "auto" in (self.lr, self.max_lr, self.base_lr)

    def to_params(self) -> dict[str, str]:
        """Flat MLflow params: every field, None as an empty value left out, mappings flattened."""
        out: dict[str, str] = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": str(v) for k, v in value.items()})
            elif value is not None:
                out[key] = str(value)
        return out


PRESETS: dict[str, dict[str, Any]] = {
    # Kingma & Ba (2015): Adam with its paper defaults.
    "adam": {"optimizer": "adam", "lr": 1e-3, "schedule": "constant"},
    # Smith & Topin (2019), "super-convergence": SGD + Nesterov momentum, one-cycle peaking at 0.1.
    "sgd_onecycle": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "schedule": "onecycle",
                     "weight_decay": 5e-4},
    # Loshchilov & Hutter (2019): AdamW with decoupled weight decay and cosine annealing.
    "adamw_cosine": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "schedule": "cosine",
                     "warmup_epochs": 1.0},
    # Riedmiller & Braun (1993): Rprop wants (near) full batches and adapts its own step sizes.
    "rprop": {"optimizer": "rprop", "lr": 1e-2, "schedule": "constant", "batch_size": 1024},
}

_FIELDS = {f.name: f for f in fields(TrainConfig)}
_NONE_WORDS = {"", "none", "null", "''", '""'}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


def field_help(cls: type = TrainConfig) -> list[tuple[str, str, str]]:
    """(name, default, help) for every setting, for ``--help`` and the README."""
    return [(f.name, str(_default(f)), f.metadata["help"]) for f in fields(cls)]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


AUTO_KEYS = ("lr", "max_lr", "base_lr")


@functools.cache
def _fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(cls)}


@functools.cache
def _hints_of(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # slow (it evaluates the annotations): once per class


def coerce(key: str, value: Any, cls: type = TrainConfig) -> Any:
    """Convert a raw value (a string from the command line, or YAML) to the field's type in ``cls``."""
    if key in AUTO_KEYS and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    known = _fields_of(cls)
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see 'hyperflow train --help' for the settings"
        raise UsageError(f"unknown setting '{key}': {hint}")
    typ = _hints_of(cls)[key]
    args = [a for a in getattr(typ, "__args__", (typ,)) if a is not type(None)]
    optional = type(None) in getattr(typ, "__args__", ())
    base = args[0].__name__
    if isinstance(value, str) and value.strip().lower() in _NONE_WORDS and optional:
        return None
    if value is None:
        if optional:
            return None
        raise UsageError(f"{key} needs a value (default: {_default(known[key])})")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
            raise ValueError
        if base == "int":
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if base == "float":
            return float(value)
        if base == "dict":
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
        return str(value)
    except (TypeError, ValueError):
        kind = {"bool": "true or false", "int": "a whole number",
                "float": "a number or auto" if key in AUTO_KEYS else "a number",
                "dict": "a YAML mapping like {a: 1}"}.get(base, base)
        raise UsageError(f"{key}={value!r} is not valid: expected {kind}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of settings; a clear error when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file '{path}' not found: pass an existing YAML file with config=PATH")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UsageError(f"config file '{path}' is not valid YAML{where}: fix its syntax") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"config file '{path}' must be a mapping of settings, e.g. 'epochs: 20'")
    return loaded


def build_config(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Resolve defaults < preset < YAML file < overrides, coerce types and validate."""
    overrides = dict(overrides or {})
    from_file = load_yaml(config_file) if config_file else {}
    raw = {k: coerce(k, v) for k, v in from_file.items()}
    raw.update({k: coerce(k, v) for k, v in overrides.items()})
    preset = raw.get("preset")
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(raw)
    config = TrainConfig(**values)
    validate(config)
    return config


def _choice(key: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown {key} '{value}'{hint}: choose one of {', '.join(allowed)}")


def validate(c: TrainConfig) -> None:
    """Refuse values and combinations that cannot work, with the fix in the message."""
    _choice("task", c.task, TASKS)
    _choice("loss", c.loss, LOSSES)
    _choice("optimizer", c.optimizer, OPTIMIZERS)
    _choice("schedule", c.schedule, SCHEDULES)
    _choice("cycle_mode", c.cycle_mode, CYCLE_MODES)
    _choice("activation", c.activation, ACTIVATIONS)
    _choice("suggestion", c.suggestion, ("descent", "valley", "steep", "minimum"))
    _choice("sweep", c.sweep, ("exp", "linear"))
    _choice("sweep_loss", c.sweep_loss, ("train", "val"))
    if ":" not in c.model:
        _choice("model", c.model, ("mlp", "cnn", "unet"))
    for key in ("lr", "epochs", "batch_size", "width", "depth", "channels", "cycle_epochs", "div_factor",
                "final_div_factor", "start_lr", "end_lr", "repeats"):
        value = getattr(c, key)
        if value == "auto":
            continue
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{key} must be positive, got {value}: pass e.g. {key}={_default(_FIELDS[key])}")
    for key in ("max_lr", "base_lr"):
        value = getattr(c, key)
        if value not in (None, "auto") and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{key} must be positive, got {value}")
    if c.start_lr >= c.end_lr:
        raise UsageError(f"start_lr must be below end_lr, got start_lr={c.start_lr}, end_lr={c.end_lr}")
    if c.num_iter < 10:
        raise UsageError(f"num_iter must be at least 10 to read a curve, got {c.num_iter}: the default is 100")
    for key in ("weight_decay", "grad_clip", "min_lr", "warmup_epochs", "label_smoothing", "min_delta",
                "patience", "threads", "flush_secs"):
        if getattr(c, key) < 0:
            raise UsageError(f"{key} must be zero or positive, got {getattr(c, key)}")
    for key in ("dropout", "label_smoothing"):
        if not 0 <= getattr(c, key) < 1:
            raise UsageError(f"{key} must be in [0, 1), got {getattr(c, key)}")
    if not 0 < c.pct_start < 1:
        raise UsageError(f"pct_start must be between 0 and 1, got {c.pct_start}")
    if not (0 < c.val_size < 1 and 0 <= c.test_size < 1 and c.val_size + c.test_size < 1):
        raise UsageError(f"val_size and test_size must be fractions that leave rows for training, "
                         f"got val_size={c.val_size}, test_size={c.test_size}")
    if not 0 <= c.momentum < 1 or not 0 <= c.beta1 < 1 or not 0 <= c.beta2 < 1:
        raise UsageError("momentum, beta1 and beta2 must be in [0, 1)")
    if c.nesterov and (c.optimizer != "sgd" or c.momentum == 0):
        raise UsageError("nesterov=true needs optimizer=sgd with momentum > 0")
    if c.optimizer == "rprop":
        if c.weight_decay:
            raise UsageError("rprop does not support weight_decay: set weight_decay=0 or use adamw")
        if c.schedule != "constant":
            raise UsageError(f"rprop adapts its own step sizes, so schedule={c.schedule} has no effect on it: "
                             f"use schedule=constant")
    if "auto" in (c.max_lr, c.base_lr) and c.schedule not in ("onecycle", "cyclic"):
        raise UsageError(f"max_lr/base_lr=auto set the bounds of schedule=onecycle or cyclic, not {c.schedule}: "
                         f"use lr=auto")
    if c.base_lr == "auto" and c.schedule != "cyclic":
        raise UsageError("base_lr=auto applies to schedule=cyclic only")
    if c.schedule == "cyclic" and "auto" not in (c.max_lr, c.base_lr, c.lr):
        top = c.max_lr or c.lr
        if c.base_lr is not None and c.base_lr >= top:
            raise UsageError(f"cyclic schedule needs base_lr < max_lr, got base_lr={c.base_lr}, max_lr={top}")
    if c.warmup_epochs and c.schedule not in ("constant", "cosine"):
        raise UsageError(f"warmup_epochs applies to schedule=constant or cosine; {c.schedule} has its own "
                         f"warm-up (onecycle: pct_start, cyclic: the rising half-cycle)")
    if c.warmup_epochs >= c.epochs:
        raise UsageError(f"warmup_epochs ({c.warmup_epochs}) must be shorter than epochs ({c.epochs})")
    if c.schedule == "cosine" and c.lr != "auto" and c.min_lr >= c.lr:
        raise UsageError(f"cosine schedule needs min_lr < lr, got min_lr={c.min_lr}, lr={c.lr}")
