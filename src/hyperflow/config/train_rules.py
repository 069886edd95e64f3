"""The rules between the settings of a TrainConfig ``c`` (each setting's own type and range is on its field): a
built-in model and model_kwargs, the memory a model needs, the LR range test's sweep, the schedule and the
optimizer."""

from __future__ import annotations

import os
from typing import Any

from hyperflow.config.fields import field_defaults, unknown_choice
from hyperflow.errors import UsageError

# The settings each built-in model is built with (hyperflow.core.models; tests/test_config.py holds them to
# its factories): model_kwargs go to a user's module:function model only.
MODEL_SETTINGS = {
    "mlp": ("width", "depth", "dropout", "activation", "batch_norm"),
    "cnn": ("channels", "dropout", "activation"),
    "unet": ("channels", "activation"),
}

# float32 weights + gradients + two Adam moments: the memory of one parameter while training
BYTES_PER_PARAM = 16


def model_parameters(c: Any) -> int | None:
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


def _fits_in_memory(c: Any) -> None:
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


def check_rules(c: Any) -> None:
    """Refuse combinations that cannot work, with the fix in the message."""
    if ":" not in c.model:
        if c.model not in MODEL_SETTINGS:
            raise unknown_choice("model", c.model, tuple(MODEL_SETTINGS))
        if c.model_kwargs:
            takes = MODEL_SETTINGS[c.model]
            raise UsageError(
                f"model_kwargs ({', '.join(map(str, c.model_kwargs))}) go to a package.module:function "
                f"model only; model={c.model} takes {', '.join(takes)} as settings (e.g. {takes[0]}="
                f"{field_defaults(type(c))[takes[0]]}): drop model_kwargs"
            )
    _fits_in_memory(c)
    if c.start_lr >= c.end_lr:
        raise UsageError(f"start_lr must be below end_lr, got start_lr={c.start_lr}, end_lr={c.end_lr}")
    if c.val_size + c.test_size >= 1:
        raise UsageError(
            f"val_size and test_size must be fractions that leave rows for training, "
            f"got val_size={c.val_size}, test_size={c.test_size}"
        )
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
