"""Optimizers and learning-rate schedules from a config, on ``torch.optim`` and its ``lr_scheduler``.

Every schedule is stepped once per mini-batch, so lengths are given in epochs and converted here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import lr_scheduler

from hyperflow.config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam (coupled L2), AdamW (decoupled decay) or Rprop; with ``c.fused``, torch's
    fused kernel for the first three (the same update in one pass per parameter instead of one small op per
    term of the formula: 1.1-1.6x faster epochs for the default space's MLPs on CPU, docs/benchmarks.md);
    else, or where the parameters' device or dtype has no such kernel, torch's default implementation."""
    params = list(params)
    lr = start_lr(c)
    if c.optimizer == "rprop":
        return torch.optim.Rprop(params, lr=lr)
    if c.optimizer == "sgd":
        cls, kwargs = torch.optim.SGD, {"momentum": c.momentum, "nesterov": c.nesterov}
    else:
        cls, kwargs = (torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW), {"betas": (c.beta1, c.beta2)}
    kwargs.update(lr=lr, weight_decay=c.weight_decay)
    if c.fused and _fusable(params):
        kwargs["fused"] = True
    return cls(params, **kwargs)


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch has a fused kernel for every parameter (complex ones, a device without one: not). torch's
    own rule, which it would otherwise apply only at the first step, failing the training there."""
    try:
        from torch.optim.optimizer import _device_dtype_check_for_fused
    except ImportError:  # a torch older than this rule (before its CPU kernels): the loop, as before
        return False
    try:
        for param in params:
            _device_dtype_check_for_fused(param)
    except RuntimeError:
        return False
    return True


def peak_lr(c: TrainConfig) -> float:
    """The highest lr of the schedule: max_lr for onecycle/cyclic (default lr), lr otherwise."""
    return (c.max_lr or c.lr) if c.schedule in ("onecycle", "cyclic") else c.lr


def cyclic_base_lr(c: TrainConfig) -> float:
    """Lower bound of the cyclic schedule: Smith (2017) suggests 1/3 to 1/4 of the upper bound."""
    return c.base_lr if c.base_lr is not None else peak_lr(c) / 4


def start_lr(c: TrainConfig) -> float:
    if c.schedule == "cyclic":
        return cyclic_base_lr(c)
    return peak_lr(c)


def has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer has a momentum term a schedule can cycle (SGD momentum, Adam beta1)."""
    defaults = optimizer.defaults
    return defaults.get("momentum", 0) > 0 or "betas" in defaults


def build_scheduler(
    optimizer: torch.optim.Optimizer, c: TrainConfig, steps_per_epoch: int
) -> lr_scheduler.LRScheduler | None:
    """The configured schedule, stepped per batch; None for a constant lr without warm-up."""
    total = c.epochs * steps_per_epoch
    if c.schedule == "onecycle":
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peak_lr(c),
            total_steps=total,
            pct_start=c.pct_start,
            div_factor=c.div_factor,
            final_div_factor=c.final_div_factor,
            cycle_momentum=has_momentum(optimizer),
        )
    if c.schedule == "cyclic":
        return lr_scheduler.CyclicLR(
            optimizer,
            base_lr=cyclic_base_lr(c),
            max_lr=peak_lr(c),
            step_size_up=max(1, round(c.cycle_epochs * steps_per_epoch / 2)),
            mode=c.cycle_mode,
            gamma=c.cycle_gamma,
            cycle_momentum=has_momentum(optimizer),
        )
    warmup = math.ceil(c.warmup_epochs * steps_per_epoch)
    main: lr_scheduler.LRScheduler | None = None
    if c.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=c.min_lr)
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup)
    if main is None:
        return ramp
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
