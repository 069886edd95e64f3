"""The training loop: pure PyTorch, no MLflow. Tracking and progress plug in as callbacks.

The whole dataset lives in memory as tensors and each step indexes a shuffled slice of it: for data
that fits in memory, a per-sample Dataset/DataLoader only adds Python overhead (see bench/trainer.py).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hyperflow.core.metrics import task_metrics

EVAL_CHUNK = 4096


class Callback:
    """Hooks called by :class:`Trainer`; override what you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """What a fit did. ``status``: ``completed``, ``early_stopped`` or ``diverged``."""

    status: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    reason: str = ""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA); optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if (
        torch.are_deterministic_algorithms_enabled() != deterministic
        or torch.is_deterministic_algorithms_warn_only_enabled()
    ):
        # only on a change: the call imports torch._inductor's config (and with it torch._dynamo, ~1.5 s)
        torch.use_deterministic_algorithms(deterministic, warn_only=False)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Batches per epoch; a trailing batch of one row is dropped (batch norm cannot train on it)."""
    full, rest = divmod(n_rows, batch_size)
    return full + (1 if rest > 1 else 0)


class ProgressBar(Callback):
    """Training's live progress on stderr: on a terminal a tqdm bar over epochs with the latest losses; elsewhere
    (a scheduler's log, a pipe) one plain line per finished epoch with elapsed and estimated time left."""

    def __init__(self, description: str = "train") -> None:
        self.description = description
        self.bar: tqdm | None = None
        self.started = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self.started = time.monotonic()
        if sys.stderr.isatty():
            self.bar = tqdm(total=trainer.epochs, desc=self.description, unit="epoch", leave=False)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        losses = {"train_loss": f"{metrics['train_loss']:.4g}", "val_loss": f"{metrics['val_loss']:.4g}"}
        if self.bar is not None:
            self.bar.set_postfix(losses)
            self.bar.update()
            return
        elapsed = time.monotonic() - self.started
        left = elapsed * (trainer.epochs - epoch) / max(epoch, 1)
        shown = " ".join(f"{k} {v}" for k, v in losses.items())
        clock = tqdm.format_interval
        print(
            f"{self.description}: epoch {epoch}/{trainer.epochs} {shown} | {clock(elapsed)} elapsed, "
            f"~{clock(left)} left",
            file=sys.stderr,
            flush=True,
        )

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """Mini-batch training with per-epoch validation, early stopping, best-weights restore and a
    divergence guard. ``fit`` returns a :class:`TrainResult`; ``evaluate`` scores any split."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        *,
        task: str,
        epochs: int,
        batch_size: int,
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best: bool = True,
        grad_clip: float = 0.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
        target_std: float = 1.0,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn, self.optimizer, self.scheduler = loss_fn, optimizer, scheduler
        self.task, self.epochs, self.batch_size = task, epochs, batch_size
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.grad_clip, self.seed, self.target_std = grad_clip, seed, target_std
        self.callbacks = list(callbacks)
        self.stop_requested = False  # a callback may set this to end training after the current epoch

    def _emit(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def fit(
        self, X_train: torch.Tensor, y_train: torch.Tensor, X_val: torch.Tensor, y_val: torch.Tensor
    ) -> TrainResult:
        if self.optimizer is None:
            raise ValueError(
                "this trainer only evaluates (built with train=False); build it with setup_training(config) to fit"
            )
        model, opt, sched, loss_fn = self.model, self.optimizer, self.scheduler, self.loss_fn
        X, y = X_train.to(self.device), y_train.to(self.device)
        n, bs = len(X), self.batch_size
        n_steps = steps_per_epoch(n, bs)
        order = torch.Generator().manual_seed(self.seed)
        best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
        result = TrainResult("completed", 0, 0, math.inf)
        started = time.perf_counter()
        self._emit("on_train_start")
        for epoch in range(1, self.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=order).to(self.device)
            total = torch.zeros((), device=self.device)
            lr = opt.param_groups[0]["lr"]
            for step in range(n_steps):
                idx = perm[step * bs : (step + 1) * bs]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                if self.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                total += loss.detach() * len(idx)
            train_loss = float(total) / min(n, n_steps * bs)
            val = self.evaluate(X_val, y_val, prefix="val_")
            metrics = {"train_loss": train_loss, **val, "lr": lr}
            result.history.append({"epoch": epoch, **metrics})
            result.epochs_run = epoch
            if not (math.isfinite(train_loss) and math.isfinite(val["val_loss"])):
                result.status = "diverged"
                result.reason = (
                    f"non-finite loss at epoch {epoch} (train_loss={train_loss}, "
                    f"val_loss={val['val_loss']}): lower the learning rate or clip gradients"
                )
                self._emit("on_epoch_end", epoch, metrics)
                break
            if val["val_loss"] < best_loss - self.min_delta:
                best_loss, best_epoch, stale = val["val_loss"], epoch, 0
                if self.restore_best:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            self._emit("on_epoch_end", epoch, metrics)
            if self.patience and stale >= self.patience:
                result.status = "early_stopped"
                result.reason = f"val_loss did not improve for {self.patience} epochs"
                break
            if self.stop_requested:
                result.status, result.reason = "early_stopped", "stopped by a callback"
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        result.best_epoch, result.best_val_loss = best_epoch, best_loss
        result.seconds = time.perf_counter() - started
        self._emit("on_train_end", result)
        return result

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Raw model outputs (logits / values) for a whole split, in eval mode, in chunks."""
        self.model.eval()
        with torch.inference_mode():
            outputs = [self.model(X[i : i + EVAL_CHUNK].to(self.device)) for i in range(0, len(X), EVAL_CHUNK)]
        return torch.cat(outputs) if outputs else torch.empty(0)

    def evaluate(self, X: torch.Tensor, y: torch.Tensor, prefix: str = "") -> dict[str, float]:
        """Loss and task metrics on one split, keys prefixed (``val_loss``, ``test_accuracy``, …)."""
        if len(X) == 0:
            return {}
        output = self.predict(X)
        y = y.to(self.device)
        with torch.inference_mode():
            loss = float(self.loss_fn(output, y))
        metrics = {"loss": loss, **task_metrics(self.task, output.cpu().numpy(), y.cpu().numpy(), self.target_std)}
        return {prefix + k: v for k, v in metrics.items()}
