"""Typed, frozen configurations: defaults < preset < YAML file < command-line overrides.

One flat dataclass per command (nanoGPT style): every field is a command-line key (``epochs=50``), a YAML
key and an MLflow param of the same name, so a run's params read like the command that made it. Every
config coerces and validates itself in ``__post_init__``, so no path (command line, MLproject, Python,
resume, ``dataclasses.replace``) can build an invalid one; the builders only merge sources.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hyperflow.config.fields import (
    check_choice,
    check_model_name,
    coerce,
    coerce_fields,
    default_value,
    load_yaml,
    setting,
)
from hyperflow.errors import UsageError

TASKS = ("classification", "regression", "segmentation")
LOSSES = ("cross_entropy", "mse", "l1", "huber", "dice", "bce_dice")
OPTIMIZERS = ("sgd", "adam", "adamw", "rprop")
SCHEDULES = ("constant", "onecycle", "cyclic", "cosine")
CYCLE_MODES = ("triangular", "triangular2", "exp_range")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "leaky_relu")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Coerced and validated on construction (:func:`validate`)."""

    # data
    data: str = setting(
        "digits", "built-in name (digits, breast_cancer, wine, diabetes, shapes) or a CSV/Parquet/NPZ path"
    )
    target: str | None = setting(None, "target column of a CSV/Parquet file")
    task: str | None = setting(None, "classification | regression | segmentation (default: inferred from the data)")
    split_column: str | None = setting(
        None, "column with train/val/test per row (default: a seeded random split)", names="a column"
    )
    val_size: float = setting(0.15, "fraction of rows for validation")
    test_size: float = setting(0.15, "fraction of rows for the final test")
    # model
    model: str = setting("mlp", "mlp | cnn | unet | package.module:function (your own nn.Module factory)")
    width: int = setting(
        256, "hidden units per MLP layer (at most 2**20; width² × depth × 16 bytes must fit in memory)"
    )
    depth: int = setting(2, "hidden layers of the MLP (at most 1000)")
    channels: int = setting(16, "base channels of cnn / unet")
    dropout: float = setting(0.0, "dropout probability")
    activation: str = setting("relu", "relu | gelu | silu | tanh | leaky_relu")
    batch_norm: bool = setting(False, "batch normalisation after each hidden layer")
    model_kwargs: dict = setting({}, "extra keyword arguments for a module:function model (YAML mapping)")
    # loss
    loss: str | None = setting(None, "cross_entropy | mse | l1 | huber | dice | bce_dice (default follows the task)")
    label_smoothing: float = setting(0.0, "label smoothing for cross_entropy")
    # optimizer
    preset: str | None = setting(
        None, "literature preset: " + ", ".join(["adam", "sgd_onecycle", "adamw_cosine", "rprop"])
    )
    optimizer: str = setting("adam", "sgd | adam | adamw | rprop")
    lr: float | str = setting(
        3e-3,
        "learning rate (the peak lr of onecycle / cyclic unless max_lr is set); "
        "auto = run the LR range test first and use its suggestion",
    )
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum for SGD")
    beta1: float = setting(0.9, "Adam/AdamW beta1")
    beta2: float = setting(0.999, "Adam/AdamW beta2")
    weight_decay: float = setting(0.0, "L2 penalty (SGD, Adam) or decoupled weight decay (AdamW)")
    fused: bool = setting(
        True,
        "sgd, adam, adamw: torch's fused kernel, one pass over each parameter per step "
        "where the device has one (CPU, CUDA, MPS); false = torch's per-tensor loop",
    )
    # schedule
    schedule: str = setting("onecycle", "constant | onecycle | cyclic | cosine")
    max_lr: float | str | None = setting(
        None, "peak lr of onecycle / upper bound of cyclic (default: lr); auto = the top of the LR range test's range"
    )
    base_lr: float | str | None = setting(
        None, "lower bound of cyclic (default: max_lr / 4); auto = the bottom of the LR range test's range"
    )
    pct_start: float = setting(0.3, "onecycle: fraction of steps spent warming up")
    div_factor: float = setting(25.0, "onecycle: initial lr = max_lr / div_factor")
    final_div_factor: float = setting(1e4, "onecycle: final lr = initial lr / final_div_factor")
    cycle_mode: str = setting("triangular", "cyclic: triangular | triangular2 | exp_range")
    cycle_epochs: float = setting(4.0, "cyclic: length of one full cycle (up and down) in epochs")
    cycle_gamma: float = setting(0.99, "cyclic exp_range: amplitude decay per step")
    min_lr: float = setting(0.0, "cosine: final lr")
    warmup_epochs: float = setting(0.0, "constant / cosine: linear warm-up length in epochs")
    # LR range test (lr_find, and lr/max_lr/base_lr=auto)
    start_lr: float = setting(1e-7, "LR range test: first lr of the sweep")
    end_lr: float = setting(1.0, "LR range test: last lr of the sweep")
    num_iter: int = setting(100, "LR range test: mini-batches in the sweep")
    sweep: str = setting("exp", "LR range test: exp (lr grows exponentially) or linear")
    suggestion: str = setting(
        "descent",
        "LR range test rule: descent (where the loss has done 20% of its fall) | "
        "valley | steep | minimum (lr at the minimum / 10)",
    )
    repeats: int = setting(1, "LR range test: sweeps from the same start with different batch orders (a band)")
    sweep_loss: str = setting("train", "LR range test: train (each batch's loss) or val (a fixed validation batch)")
    # loop
    epochs: int = setting(30, "training epochs (at most 1,000,000)")
    batch_size: int = setting(64, "mini-batch size (at most 2**24)")
    patience: int = setting(0, "early stopping: epochs without val_loss improvement (0 = off)")
    min_delta: float = setting(0.0, "early stopping: smallest val_loss decrease that counts")
    restore_best: bool = setting(True, "end with the weights of the best val_loss epoch")
    grad_clip: float = setting(0.0, "clip the gradient norm to this value (0 = off)")
    seed: int = setting(42, "seed for the data split, initialisation and batch order (0 to 2**32-1)")
    deterministic: bool = setting(False, "use only deterministic torch algorithms (slower on GPU)")
    threads: int = setting(
        1,
        "torch intra-op threads (1 is fastest for small models; 0 = torch's default, "
        "at most the CPUs this process may use)",
    )
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    progress: bool = setting(True, "tqdm progress bar (shown on a terminal only)")
    # tracking
    experiment: str | None = setting(
        None, "MLflow experiment name (default: MLflow's current one)", names="an experiment name"
    )
    run_name: str | None = setting(None, "MLflow run name", names="a run name")
    model_name: str | None = setting(
        None, "register the trained model under this name", names="a registered model name"
    )
    log_model: bool = setting(True, "log the model (with its preprocessing) as an MLflow model")
    tensorboard: bool = setting(False, "also write TensorBoard event files and log them as an artifact")
    flush_secs: float = setting(1.0, "send buffered metrics to MLflow at most this often (0 = every epoch)")

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate(self)

    def replace(self, **changes: Any) -> TrainConfig:
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


# The settings each built-in model is built with (hyperflow.core.models; tests/test_config.py holds them to
# its factories): model_kwargs go to a user's module:function model only.
MODEL_SETTINGS = {
    "mlp": ("width", "depth", "dropout", "activation", "batch_norm"),
    "cnn": ("channels", "dropout", "activation"),
    "unet": ("channels", "activation"),
}

PRESETS: dict[str, dict[str, Any]] = {
    # Kingma & Ba (2015): Adam with its paper defaults.
    "adam": {"optimizer": "adam", "lr": 1e-3, "schedule": "constant"},
    # Smith & Topin (2019), "super-convergence": SGD + Nesterov momentum, one-cycle peaking at 0.1.
    "sgd_onecycle": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "schedule": "onecycle",
        "weight_decay": 5e-4,
    },
    # Loshchilov & Hutter (2019): AdamW with decoupled weight decay and cosine annealing.
    "adamw_cosine": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.01,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
    },
    # Riedmiller & Braun (1993): Rprop wants (near) full batches and adapts its own step sizes.
    "rprop": {"optimizer": "rprop", "lr": 1e-2, "schedule": "constant", "batch_size": 1024},
}

_FIELDS = {f.name: f for f in fields(TrainConfig)}
# Upper bounds: far above any sensible run, low enough that a typo (width=1e10, seed=1e30) is refused at
# once with one line instead of crashing deep in numpy/torch or allocating for hours.
MAX_SEED = 2**32 - 1  # numpy's seed range
LIMITS = {
    "epochs": 1_000_000,
    "batch_size": 2**24,
    "width": 2**20,
    "depth": 1_000,
    "channels": 2**14,
    "num_iter": 1_000_000,
    "repeats": 100,
    "threads": 4_096,
    "patience": 1_000_000,
}
# float32 weights + gradients + two Adam moments: the memory of one parameter while training
BYTES_PER_PARAM = 16


def build_config(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Resolve defaults < preset < YAML file < overrides, coerce types and validate."""
    overrides = dict(overrides or {})
    from_file = load_yaml(config_file) if config_file else {}
    raw = {k: coerce(k, v, TrainConfig) for k, v in from_file.items()}
    raw.update({k: coerce(k, v, TrainConfig) for k, v in overrides.items()})
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
    raise UsageError(
        f"model={c.model} with {sizes} needs about {need:,.0f} GiB for its "
        f"weights, gradients and optimizer state, more than this machine's {memory / 2**30:.0f} GiB: "
        f"use a smaller {'width or depth' if c.model == 'mlp' else 'channels'}"
    )


def validate(c: TrainConfig) -> None:
    """Refuse values and combinations that cannot work, with the fix in the message."""
    check_model_name(c.model_name)
    check_choice("task", c.task, TASKS)
    check_choice("loss", c.loss, LOSSES)
    check_choice("optimizer", c.optimizer, OPTIMIZERS)
    check_choice("schedule", c.schedule, SCHEDULES)
    check_choice("cycle_mode", c.cycle_mode, CYCLE_MODES)
    check_choice("activation", c.activation, ACTIVATIONS)
    check_choice("suggestion", c.suggestion, ("descent", "valley", "steep", "minimum"))
    check_choice("sweep", c.sweep, ("exp", "linear"))
    check_choice("sweep_loss", c.sweep_loss, ("train", "val"))
    if ":" not in c.model:
        check_choice("model", c.model, tuple(MODEL_SETTINGS))
        if c.model_kwargs:
            takes = MODEL_SETTINGS[c.model]
            raise UsageError(
                f"model_kwargs ({', '.join(map(str, c.model_kwargs))}) go to a package.module:function "
                f"model only; model={c.model} takes {', '.join(takes)} as settings (e.g. {takes[0]}="
                f"{default_value(_FIELDS[takes[0]])}): drop model_kwargs"
            )
    for key in (
        "lr",
        "epochs",
        "batch_size",
        "width",
        "depth",
        "channels",
        "cycle_epochs",
        "div_factor",
        "final_div_factor",
        "start_lr",
        "end_lr",
        "repeats",
    ):
        value = getattr(c, key)
        if value == "auto":
            continue
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{key} must be positive, got {value}: pass e.g. {key}={default_value(_FIELDS[key])}")
    for key in ("max_lr", "base_lr"):
        value = getattr(c, key)
        if value not in (None, "auto") and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{key} must be positive, got {value}")
    for key, limit in LIMITS.items():
        if getattr(c, key) > limit:
            raise UsageError(
                f"{key} must be at most {limit}, got {_show(getattr(c, key))}: "
                f"pass e.g. {key}={default_value(_FIELDS[key])}"
            )
    if not 0 <= c.seed <= MAX_SEED:
        raise UsageError(f"seed must be a whole number from 0 to {MAX_SEED} (numpy's range), got {_show(c.seed)}")
    _fits_in_memory(c)
    if c.start_lr >= c.end_lr:
        raise UsageError(f"start_lr must be below end_lr, got start_lr={c.start_lr}, end_lr={c.end_lr}")
    if c.num_iter < 10:
        raise UsageError(f"num_iter must be at least 10 to read a curve, got {c.num_iter}: the default is 100")
    for key in (
        "weight_decay",
        "grad_clip",
        "min_lr",
        "warmup_epochs",
        "label_smoothing",
        "min_delta",
        "patience",
        "threads",
        "flush_secs",
    ):
        if getattr(c, key) < 0:
            raise UsageError(f"{key} must be zero or positive, got {getattr(c, key)}")
    for key in ("dropout", "label_smoothing"):
        if not 0 <= getattr(c, key) < 1:
            raise UsageError(f"{key} must be in [0, 1), got {getattr(c, key)}")
    if not 0 < c.pct_start < 1:
        raise UsageError(f"pct_start must be between 0 and 1, got {c.pct_start}")
    if not (0 < c.val_size < 1 and 0 <= c.test_size < 1 and c.val_size + c.test_size < 1):
        raise UsageError(
            f"val_size and test_size must be fractions that leave rows for training, "
            f"got val_size={c.val_size}, test_size={c.test_size}"
        )
    if not 0 <= c.momentum < 1 or not 0 <= c.beta1 < 1 or not 0 <= c.beta2 < 1:
        raise UsageError("momentum, beta1 and beta2 must be in [0, 1)")
    if c.batch_norm and c.batch_size == 1 and c.model == "mlp":
        raise UsageError(
            "batch_norm=true needs batch_size of at least 2 (batch norm cannot train on a batch of "
            "one row): raise batch_size or set batch_norm=false"
        )
    if c.nesterov and (c.optimizer != "sgd" or c.momentum == 0):
        raise UsageError("nesterov=true needs optimizer=sgd with momentum > 0")
    if c.optimizer == "rprop":
        if c.weight_decay:
            raise UsageError("rprop does not support weight_decay: set weight_decay=0 or use adamw")
        if c.schedule != "constant":
            raise UsageError(
                f"rprop adapts its own step sizes, so schedule={c.schedule} has no effect on it: use schedule=constant"
            )
    if "auto" in (c.max_lr, c.base_lr) and c.schedule not in ("onecycle", "cyclic"):
        raise UsageError(
            f"max_lr/base_lr=auto set the bounds of schedule=onecycle or cyclic, not {c.schedule}: use lr=auto"
        )
    if c.base_lr == "auto" and c.schedule != "cyclic":
        raise UsageError("base_lr=auto applies to schedule=cyclic only")
    if c.schedule == "cyclic" and "auto" not in (c.max_lr, c.base_lr, c.lr):
        top = c.max_lr or c.lr
        if c.base_lr is not None and c.base_lr >= top:
            raise UsageError(f"cyclic schedule needs base_lr < max_lr, got base_lr={c.base_lr}, max_lr={top}")
    if c.warmup_epochs and c.schedule not in ("constant", "cosine"):
        raise UsageError(
            f"warmup_epochs applies to schedule=constant or cosine; {c.schedule} has its own "
            f"warm-up (onecycle: pct_start, cyclic: the rising half-cycle)"
        )
    if c.warmup_epochs >= c.epochs:
        raise UsageError(f"warmup_epochs ({c.warmup_epochs}) must be shorter than epochs ({c.epochs})")
    if c.schedule == "cosine" and c.lr != "auto" and c.min_lr >= c.lr:
        raise UsageError(f"cosine schedule needs min_lr < lr, got min_lr={c.min_lr}, lr={c.lr}")
