"""Typed, frozen configurations: defaults < preset < YAML file < command-line overrides.

One flat pydantic dataclass per command (nanoGPT style): every field is a command-line key (``epochs=50``), a
YAML key and an MLflow param of the same name, so a run's params read like the command that made it. Each field
declares its type, default, range and help once; the help text and the parsing are made from them. Every config
validates itself on construction (:class:`hyperflow.config.fields.Settings`; the rules between settings in
:mod:`hyperflow.config.train_rules`), so no path (command line, MLproject, Python, resume,
``dataclasses.replace``) can build an invalid one; the builders only merge sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from hyperflow.config.fields import SETTINGS_CONFIG, Auto, check_model_name
from hyperflow.config.settings import Settings, coerce
from hyperflow.config.train_rules import check_rules

TASKS = ("classification", "regression", "segmentation")
LOSSES = ("cross_entropy", "mse", "l1", "huber", "dice", "bce_dice")
OPTIMIZERS = ("sgd", "adam", "adamw", "rprop")
SCHEDULES = ("constant", "onecycle", "cyclic", "cosine")
CYCLE_MODES = ("triangular", "triangular2", "exp_range")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "leaky_relu")
DATA_SETTINGS = ("data", "target", "task", "split_column", "val_size", "test_size")  # search --help lists them

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

# Upper bounds: far above any sensible run, low enough that a typo (width=1e10, seed=1e30) is refused at
# once with one line instead of crashing deep in numpy/torch or allocating for hours.
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_EPOCHS = 1_000_000
Positive = Annotated[float, Field(gt=0)]
ModelName = Annotated[str | None, AfterValidator(check_model_name)]


def _names(what: str) -> dict[str, str]:
    """A setting that names something: an empty value given (``experiment=``) is refused, not the default."""
    return {"names": what}


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class TrainConfig(Settings):
    """Everything one training run needs. Typed, ranged and checked on construction."""

    # data
    data: str = Field(
        "digits", description="built-in name (digits, breast_cancer, wine, diabetes, shapes) or a CSV/Parquet/NPZ path"
    )
    target: str | None = Field(None, description="target column of a CSV/Parquet file")
    task: Literal[TASKS] | None = Field(None, description="default: inferred from the data")
    split_column: str | None = Field(
        None,
        description="column with train/val/test per row (default: a seeded random split)",
        json_schema_extra=_names("a column"),
    )
    val_size: float = Field(0.15, gt=0, lt=1, description="fraction of rows for validation")
    test_size: float = Field(0.15, ge=0, lt=1, description="fraction of rows for the final test")
    # model
    model: str = Field("mlp", description="mlp | cnn | unet | package.module:function (your own nn.Module factory)")
    width: int = Field(
        256, gt=0, le=2**20, description="hidden units per MLP layer (width² × depth × 16 bytes must fit in memory)"
    )
    depth: int = Field(2, gt=0, le=1_000, description="hidden layers of the MLP")
    channels: int = Field(16, gt=0, le=2**14, description="base channels of cnn / unet")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability")
    activation: Literal[ACTIVATIONS] = Field("relu", description="")
    batch_norm: bool = Field(False, description="batch normalisation after each hidden layer")
    model_kwargs: dict = Field(
        default_factory=dict, description="extra keyword arguments for a module:function model (YAML mapping)"
    )
    # loss
    loss: Literal[LOSSES] | None = Field(None, description="default follows the task")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing for cross_entropy")
    # optimizer
    preset: Literal[tuple(PRESETS)] | None = Field(None, description="literature preset")
    optimizer: Literal[OPTIMIZERS] = Field("adam", description="")
    lr: Positive | Auto = Field(
        3e-3,
        description="learning rate (the peak lr of onecycle / cyclic unless max_lr is set); "
        "auto = run the LR range test first and use its suggestion",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum for SGD")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam/AdamW beta1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam/AdamW beta2")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (SGD, Adam) or decoupled weight decay (AdamW)")
    fused: bool = Field(
        True,
        description="sgd, adam, adamw: torch's fused kernel, one pass over each parameter per step "
        "where the device has one (CPU, CUDA, MPS); false = torch's per-tensor loop",
    )
    # schedule
    schedule: Literal[SCHEDULES] = Field("onecycle", description="")
    max_lr: Positive | Auto | None = Field(
        None,
        description="peak lr of onecycle / upper bound of cyclic (default: lr); auto = the top of the LR range "
        "test's range",
    )
    base_lr: Positive | Auto | None = Field(
        None,
        description="lower bound of cyclic (default: max_lr / 4); auto = the bottom of the LR range test's range",
    )
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: fraction of steps spent warming up")
    div_factor: float = Field(25.0, gt=0, description="onecycle: initial lr = max_lr / div_factor")
    final_div_factor: float = Field(1e4, gt=0, description="onecycle: final lr = initial lr / final_div_factor")
    cycle_mode: Literal[CYCLE_MODES] = Field("triangular", description="cyclic")
    cycle_epochs: float = Field(4.0, gt=0, description="cyclic: length of one full cycle (up and down) in epochs")
    cycle_gamma: float = Field(0.99, description="cyclic exp_range: amplitude decay per step")
    min_lr: float = Field(0.0, ge=0, description="cosine: final lr")
    warmup_epochs: float = Field(0.0, ge=0, description="constant / cosine: linear warm-up length in epochs")
    # LR range test (lr_find, and lr/max_lr/base_lr=auto)
    start_lr: float = Field(1e-7, gt=0, description="LR range test: first lr of the sweep")
    end_lr: float = Field(1.0, gt=0, description="LR range test: last lr of the sweep")
    num_iter: int = Field(
        100, ge=10, le=1_000_000, description="LR range test: mini-batches in the sweep (10 at least to read a curve)"
    )
    sweep: Literal["exp", "linear"] = Field("exp", description="LR range test: exp (lr grows exponentially) or linear")
    suggestion: Literal["descent", "valley", "steep", "minimum"] = Field(
        "descent",
        description="LR range test rule: descent (where the loss has done 20% of its fall), valley, steep, "
        "minimum (lr at the minimum / 10)",
    )
    repeats: int = Field(
        1,
        gt=0,
        le=100,
        description="LR range test: sweeps from the same start with different batch orders (a band)",
    )
    sweep_loss: Literal["train", "val"] = Field(
        "train", description="LR range test: train (each batch's loss) or val (a fixed validation batch)"
    )
    # loop
    epochs: int = Field(30, gt=0, le=MAX_EPOCHS, description="training epochs")
    batch_size: int = Field(64, gt=0, le=2**24, description="mini-batch size")
    patience: int = Field(
        0, ge=0, le=MAX_EPOCHS, description="early stopping: epochs without val_loss improvement (0 = off)"
    )
    min_delta: float = Field(0.0, ge=0, description="early stopping: smallest val_loss decrease that counts")
    restore_best: bool = Field(True, description="end with the weights of the best val_loss epoch")
    grad_clip: float = Field(0.0, ge=0, description="clip the gradient norm to this value (0 = off)")
    seed: int = Field(
        42,
        ge=0,
        le=MAX_SEED,
        description="seed for the data split, initialisation and batch order",
        json_schema_extra={"range": f"a whole number from 0 to {MAX_SEED} (numpy's range)"},
    )
    deterministic: bool = Field(False, description="use only deterministic torch algorithms (slower on GPU)")
    threads: int = Field(
        1,
        ge=0,
        le=4_096,
        description="torch intra-op threads (1 is fastest for small models; 0 = torch's default, "
        "at most the CPUs this process may use)",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    progress: bool = Field(
        True,
        description="live progress on stderr: one updating line on a terminal, else one line per finished "
        "epoch (train) or trial (search)",
    )
    # tracking
    experiment: str | None = Field(
        None,
        description="MLflow experiment name (default: MLflow's current one)",
        json_schema_extra=_names("an experiment name"),
    )
    run_name: str | None = Field(None, description="MLflow run name", json_schema_extra=_names("a run name"))
    model_name: ModelName = Field(
        None,
        description="register the trained model under this name",
        json_schema_extra=_names("a registered model name"),
    )
    log_model: bool = Field(True, description="log the model (with its preprocessing) as an MLflow model")
    tensorboard: bool = Field(False, description="also write TensorBoard event files and log them as an artifact")
    flush_secs: float = Field(
        1.0, ge=0, description="send buffered metrics to MLflow at most this often (0 = every epoch)"
    )

    @model_validator(mode="after")
    def _rules(self) -> TrainConfig:
        check_rules(self)
        return self

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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config= YAML file's settings (PyYAML is imported only when a command reads one)."""
    from hyperflow.config.files import load_yaml

    return load_yaml(path)


def build_config(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Resolve defaults < preset < YAML file < overrides into a validated TrainConfig."""
    from_file = read_config_file(config_file) if config_file else {}
    raw = {**from_file, **dict(overrides or {})}
    preset = coerce("preset", raw["preset"], TrainConfig) if "preset" in raw else None
    values = {**PRESETS.get(preset or "", {}), **raw}
    return TrainConfig(**values)
