"""Assemble a training run from a config: data, model, loss, optimizer, schedule, trainer. No MLflow.

Everything that can be wrong with the user's input is checked here, before any run is started.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hyperflow import machine
from hyperflow.config import TrainConfig
from hyperflow.core.data import Dataset
from hyperflow.core.loading import load_dataset
from hyperflow.core.losses import build_loss
from hyperflow.core.lr_finder import LRFinder
from hyperflow.core.models import build_model
from hyperflow.core.optim import build_optimizer, build_scheduler
from hyperflow.core.trainer import Callback, Trainer, resolve_device, seed_everything, steps_per_epoch
from hyperflow.errors import UsageError

log = logging.getLogger(__name__)
_told: set[str] = set()  # warnings already given in this process (a search's trials would repeat them)


@dataclass
class Setup:
    """A ready-to-fit trainer plus what is needed to log and rebuild its model."""

    config: TrainConfig
    dataset: Dataset
    trainer: Trainer
    model_spec: dict[str, Any]
    user_code: list[str] = field(default_factory=list)  # source of a module:function model, bundled with it


def load_data(c: TrainConfig) -> Dataset:
    return load_dataset(
        c.data, c.target, c.task, seed=c.seed, val_size=c.val_size, test_size=c.test_size, split_column=c.split_column
    )


def configure_torch(c: TrainConfig) -> torch.device:
    """Threads, seeds and device, in that order, before any weights are created."""
    if c.threads:
        torch.set_num_threads(c.threads)
    elif torch.get_num_threads() > machine.cpus():  # torch's default counts the host's cores, not a CPU quota
        torch.set_num_threads(machine.cpus())
    seed_everything(c.seed, c.deterministic)
    try:
        device = resolve_device(c.device)
    except RuntimeError as exc:
        raise UsageError(f"device '{c.device}' is not valid ({exc}): use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={c.device} but CUDA is not available here: use device=auto or cpu")
    return device


def model_spec(c: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """Keyword arguments of :func:`hyperflow.core.models.build_model` — enough to rebuild the model to load weights."""
    return {
        "name": c.model,
        "input_shape": tuple(dataset.input_shape),
        "output_size": dataset.output_size,
        "task": dataset.task,
        "image_shape": dataset.image_shape,
        "width": c.width,
        "depth": c.depth,
        "channels": c.channels,
        "dropout": c.dropout,
        "activation": c.activation,
        "batch_norm": c.batch_norm,
        "model_kwargs": dict(c.model_kwargs),
    }


def _user_code(model: str) -> list[str]:
    """The file or package of a ``module:function`` model, so the logged model can import it anywhere."""
    if ":" not in model:
        return []
    top = model.split(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    origin = Path(spec.origin) if spec and spec.origin else None
    if origin is None or "site-packages" in origin.parts:
        return []
    return [str(origin.parent if origin.name == "__init__.py" else origin)]


def setup_training(
    c: TrainConfig, dataset: Dataset | None = None, callbacks: Sequence[Callback] = (), train: bool = True
) -> Setup:
    """Validate the config against the data and build the trainer; raises UsageError on bad input.
    ``train=False``: a trainer that only evaluates, without the optimizer and schedule (the config checks
    cover their settings). A search whose trials train in other processes builds no optimizer itself:
    in torch 2.13 the first one a process builds imports torch._dynamo, ~1 s of a core."""
    device = configure_torch(c)
    dataset = dataset or load_data(c)
    n_train = len(dataset.X_train)
    if c.batch_size > n_train:  # as a DataLoader would, train on what there is: one batch of every row
        _warn_once(
            f"batch_size={c.batch_size} is larger than the {n_train} training rows: each epoch is one "
            f"batch of {n_train} rows"
        )
        c = c.replace(batch_size=n_train)
    loss = build_loss(c.loss, dataset.task, c.label_smoothing)
    spec = model_spec(c, dataset)
    model = build_model(**spec)
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(
            f"model {c.model} has no trainable parameters: its factory must return an nn.Module "
            f"with at least one parameter that requires grad"
        )
    optimizer = scheduler = None
    if train:
        concrete = with_found_lrs(c, 1e-3, (1e-4, 1e-3)) if c.needs_lr_find else c  # until the range test runs
        optimizer = build_optimizer(model.parameters(), concrete)
        scheduler = build_scheduler(optimizer, concrete, steps_per_epoch(n_train, c.batch_size))
    trainer = Trainer(
        model,
        loss,
        optimizer,
        scheduler,
        task=dataset.task,
        epochs=c.epochs,
        batch_size=c.batch_size,
        patience=c.patience,
        min_delta=c.min_delta,
        restore_best=c.restore_best,
        grad_clip=c.grad_clip,
        seed=c.seed,
        device=device,
        target_std=dataset.target_std,
        callbacks=callbacks,
    )
    return Setup(c, dataset, trainer, spec, _user_code(c.model))


def _warn_once(message: str) -> None:
    if message not in _told:
        _told.add(message)
        log.warning(message)


def with_found_lrs(c: TrainConfig, suggested_lr: float, lr_range: tuple[float, float]) -> TrainConfig:
    """The config with every ``auto`` lr replaced: lr by the suggestion, max_lr / base_lr by the range."""
    changes: dict[str, float] = {}
    if c.lr == "auto":
        changes["lr"] = suggested_lr
    if c.max_lr == "auto":
        changes["max_lr"] = lr_range[1]
    if c.base_lr == "auto":
        changes["base_lr"] = lr_range[0]
    return c.replace(**changes)


def run_lr_finder(setup: Setup) -> LRFinder:
    """The LR range test on the setup's model, optimizer and loss (all restored afterwards)."""
    c, d, t = setup.config, setup.dataset, setup.trainer
    finder = LRFinder(
        t.model,
        t.optimizer,
        t.loss_fn,
        start_lr=c.start_lr,
        end_lr=c.end_lr,
        num_iter=c.num_iter,
        mode=c.sweep,
        batch_size=c.batch_size,
        suggestion=c.suggestion,
        repeats=c.repeats,
        seed=c.seed,
        device=t.device,
    )
    val = (d.X_val, d.y_val) if c.sweep_loss == "val" else (None, None)
    try:
        return finder.fit(d.X_train, d.y_train, *val)
    except FloatingPointError as exc:
        raise UsageError(f"LR range test: {exc}") from None


def use_config(setup: Setup, resolved: TrainConfig) -> None:
    """Rebuild optimizer and schedule for a config whose lrs are now known (the model is unchanged)."""
    t = setup.trainer
    setup.config = resolved
    t.optimizer = build_optimizer(t.model.parameters(), resolved)
    t.scheduler = build_scheduler(
        t.optimizer, resolved, steps_per_epoch(len(setup.dataset.X_train), resolved.batch_size)
    )
