"""Typed, frozen configurations: defaults < preset < YAML file < command-line overrides.

One flat dataclass per command (nanoGPT style): every field is a command-line key (``epochs=50``), a YAML
key and an MLflow param of the same name, so a run's params read like the command that made it. Every
config coerces and validates itself in ``__post_init__``, so no path (command line, MLproject, Python,
resume, ``dataclasses.replace``) can build an invalid one; the builders only merge sources.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
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
    """Everything one training run needs. Coerced and validated on construction (:func:`validate`)."""

    # data
    data: str = _f("digits", "built-in name (digits, breast_cancer, wine, diabetes, shapes) or a CSV/Parquet/NPZ path")
    target: str | None = _f(None, "target column of a CSV/Parquet file")
    task: str | None = _f(None, "classification | regression | segmentation (default: inferred from the data)")
    split_column: str | None = _f(None, "column with train/val/test per row (default: a seeded random split)")
    val_size: float = _f(0.15, "fraction of rows for validation")
    test_size: float = _f(0.15, "fraction of rows for the final test")
    # model
    model: str = _f("mlp", "mlp | cnn | unet | package.module:function (your own nn.Module factory)")
    width: int = _f(256, "hidden units per MLP layer (at most 2**20; width² × depth × 16 bytes must fit in memory)")
    depth: int = _f(2, "hidden layers of the MLP (at most 1000)")
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
    epochs: int = _f(30, "training epochs (at most 1,000,000)")
    batch_size: int = _f(64, "mini-batch size (at most 2**24)")
    patience: int = _f(0, "early stopping: epochs without val_loss improvement (0 = off)")
    min_delta: float = _f(0.0, "early stopping: smallest val_loss decrease that counts")
    restore_best: bool = _f(True, "end with the weights of the best val_loss epoch")
    grad_clip: float = _f(0.0, "clip the gradient norm to this value (0 = off)")
    seed: int = _f(42, "seed for the data split, initialisation and batch order (0 to 2**32-1)")
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

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate(self)

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
_COMMAND_OF = {"TrainConfig": "train", "SearchConfig": "search", "PromoteConfig": "promote",
               "RetrainConfig": "retrain"}

# Upper bounds: far above any sensible run, low enough that a typo (width=1e10, seed=1e30) is refused at
# once with one line instead of crashing deep in numpy/torch or allocating for hours.
MAX_SEED = 2**32 - 1  # numpy's seed range
LIMITS = {"epochs": 1_000_000, "batch_size": 2**24, "width": 2**20, "depth": 1_000, "channels": 2**14,
          "num_iter": 1_000_000, "repeats": 100, "threads": 4_096, "patience": 1_000_000}
# float32 weights + gradients + two Adam moments: the memory of one parameter while training
BYTES_PER_PARAM = 16
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


def unknown_setting(key: str, known: Any, command: str = "train") -> UsageError:
    """The error for a setting no config of ``command`` has, suggesting the closest one of THAT command."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"see 'hyperflow {command} --help' for the settings"
    return UsageError(f"unknown setting '{key}': {hint}")


def coerce(key: str, value: Any, cls: type = TrainConfig) -> Any:
    """Convert a raw value (a string from the command line, or YAML) to the field's type in ``cls``."""
    if key in AUTO_KEYS and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    known = _fields_of(cls)
    if key not in known:
        raise unknown_setting(key, known, _COMMAND_OF.get(cls.__name__, "train"))
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
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if base == "float":
            return value if type(value) is float else float(value)
        if base == "dict":
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
        return value if type(value) is str else str(value)
    except (TypeError, ValueError, OverflowError):
        kind = {"bool": "true or false", "int": "a whole number",
                "float": "a number or auto" if key in AUTO_KEYS else "a number",
                "dict": "a YAML mapping like {a: 1}"}.get(base, base)
        raise UsageError(f"{key}={value!r} is not valid: expected {kind}") from None


def coerce_fields(config: Any) -> None:
    """Coerce every field of a frozen config in place (``__post_init__``): strings from the command line,
    YAML scalars and numpy numbers become the field's type, so validation sees real values."""
    for f in fields(config):
        value = getattr(config, f.name)
        coerced = coerce(f.name, value, type(config))
        if coerced is not value:
            object.__setattr__(config, f.name, coerced)


def field_defaults(cls: type) -> dict[str, Any]:
    """Every field's default, without constructing ``cls`` (some configs need a value, e.g. model_name)."""
    return {f.name: _default(f) for f in fields(cls)}


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


def _show(number: int | float) -> str:
    return f"{float(number):.3g}" if abs(number) >= 10**12 else str(number)


def model_parameters(c: TrainConfig) -> int | None:
    """A rough upper estimate of the built-in model's parameter count (None for a user's module)."""
    if c.model == "mlp":
        return c.depth * c.width * c.width
    if c.model == "cnn":
        return 20 * c.channels * c.channels
    if c.model == "unet":
        return 700 * c.channels * c.channels  # 3x3 double convs on c, 2c, 4c channels, down and up
    return None


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _fits_in_memory(c: TrainConfig) -> None:
    """Refuse a built-in model whose weights, gradients and Adam state alone exceed this machine's memory."""
    params, memory = model_parameters(c), physical_memory()
    if params is None or memory is None or params * BYTES_PER_PARAM <= memory:
        return
    sizes = f"width={c.width} and depth={c.depth}" if c.model == "mlp" else f"channels={c.channels}"
    need = params * BYTES_PER_PARAM / 2**30
    raise UsageError(f"model={c.model} with {sizes} needs about {need:,.0f} GiB for its "
                     f"weights, gradients and optimizer state, more than this machine's {memory / 2**30:.0f} GiB: "
                     f"use a smaller {'width or depth' if c.model == 'mlp' else 'channels'}")


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
    for key, limit in LIMITS.items():
        if getattr(c, key) > limit:
            raise UsageError(f"{key} must be at most {limit}, got {_show(getattr(c, key))}: "
                             f"pass e.g. {key}={_default(_FIELDS[key])}")
    if not 0 <= c.seed <= MAX_SEED:
        raise UsageError(f"seed must be a whole number from 0 to {MAX_SEED} (numpy's range), got {_show(c.seed)}")
    _fits_in_memory(c)
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


# ------------------------------------------------------------------------------------------ promote, retrain

GATE_HELP = ("gate: YAML file or inline YAML {metric: {threshold, min_absolute_change, min_relative_change}} "
             "(default: not worse than the champion on the task's main metric); single rules as "
             "gate.<metric>.<rule>=value")
ALLOW_FIRST_HELP = ("with no champion yet there is nothing to compare with: the first promotion needs an absolute "
                    "threshold in the gate (gate.accuracy.threshold=0.9) or allow_first=true, which promotes it "
                    "unchecked")
RETRAIN_MODES = ("champion", "search")
MAX_EVALS = 1_000_000


def _required_name(c: Any, what: str) -> None:
    if not c.model_name:
        raise UsageError(f"model_name is required: the registered model to {what}")


@dataclass(frozen=True)
class PromoteConfig:
    """What ``hyperflow promote`` needs. Coerced and validated on construction."""

    model_name: str | None = _f(None, "registered model (required)")
    version: str | None = _f(None, "version number or alias to validate (default: the one with alias challenger)")
    data: str | None = _f(None, "evaluation rows: a file with the target column or a built-in name "
                                "(default: the test split of the data the version was trained on)")
    target: str | None = _f(None, "target column of data= (default: the version's training target)")
    gate: str | None = _f(None, GATE_HELP)
    gate_rules: dict = _f({}, "gate.<metric>.<rule> values collected from the command line")
    allow_first: bool = _f(False, ALLOW_FIRST_HELP)
    dry_run: bool = _f(False, "decide and log, but move no alias and set no version tags")
    max_attempts: int = _f(3, "times to re-score when the champion moves during the promotion")
    experiment: str | None = _f(None, "MLflow experiment of the promote run (default: MLflow's current one)")

    def __post_init__(self) -> None:
        coerce_fields(self)
        _required_name(self, "promote into")
        if not 1 <= self.max_attempts <= 100:
            raise UsageError(f"max_attempts must be from 1 to 100, got {self.max_attempts}")


@dataclass(frozen=True)
class RetrainConfig:
    """What ``hyperflow retrain`` needs (training settings that override the champion's travel apart)."""

    model_name: str | None = _f(None, "registered model to retrain (required)")
    data: str | None = _f(None, "new data: a file, a folder or a glob (the newest file wins), or a built-in name "
                                "(default: the champion's data)")
    target: str | None = _f(None, "target column (default: the champion's)")
    mode: str = _f("champion", "champion (train with the champion's settings) | search (a small search)")
    max_evals: int = _f(10, "mode=search: trials")
    force: bool = _f(False, "retrain even if a retrain of the same data and code already finished")
    gate: str | None = _f(None, GATE_HELP)
    gate_rules: dict = _f({}, "gate.<metric>.<rule> values collected from the command line")
    allow_first: bool = _f(False, ALLOW_FIRST_HELP + " (mode=search on a model with no champion); checked "
                                  "before anything is trained")
    lease: float = _f(600.0, "lock lease in seconds; the holder renews it every lease/3")
    experiment: str | None = _f(None, "MLflow experiment (default: MLflow's current one)")

    def __post_init__(self) -> None:
        coerce_fields(self)
        _required_name(self, "retrain")
        _choice("mode", self.mode, RETRAIN_MODES)
        if not 1 <= self.max_evals <= MAX_EVALS:
            raise UsageError(f"max_evals must be from 1 to {MAX_EVALS}, got {self.max_evals}")
        if not (10 <= self.lease <= 7 * 86400):
            raise UsageError(f"lease must be from 10 seconds to 7 days (604800), got {self.lease}")


def _with_gate_rules(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``gate.<metric>.<rule>=value`` keys gathered into ``gate_rules``; the rest as they are."""
    rules = {k: str(v) for k, v in values.items() if k.startswith("gate.")}
    plain = {k: v for k, v in values.items() if not k.startswith("gate.")}
    for key in plain:
        if key not in _fields_of(cls):
            raise unknown_setting(key, _fields_of(cls), _COMMAND_OF[cls.__name__])
    gate_rules = coerce("gate_rules", plain.get("gate_rules", {}), cls)
    return {**plain, "gate_rules": {**gate_rules, **rules}}


def build_promote_config(values: Mapping[str, Any]) -> PromoteConfig:
    return PromoteConfig(**_with_gate_rules(PromoteConfig, values))


def build_retrain_config(values: Mapping[str, Any]) -> tuple[RetrainConfig, dict[str, Any]]:
    """The retrain settings, and the training settings that override the champion's (validated now, so an
    unknown or invalid training setting fails before anything runs)."""
    own = {k: v for k, v in values.items() if k in _fields_of(RetrainConfig) or k.startswith("gate.")}
    overrides = {k: v for k, v in values.items() if k not in own}
    for key in overrides:
        if key not in _FIELDS:
            raise unknown_setting(key, {*_FIELDS, *_fields_of(RetrainConfig)}, "retrain")
    config = RetrainConfig(**_with_gate_rules(RetrainConfig, own))
    build_config(overrides)
    return config, overrides
