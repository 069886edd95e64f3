"""LR range test (Smith, 2017): train over mini-batches while the lr rises, read a good lr off the curve.

Pure PyTorch, no MLflow. What differs from the usual tools (torch-lr-finder, fastai):
- raw losses are kept; smoothing happens *after* the sweep with a window centred in log-lr, because an
  exponential moving average lags and shifts the curve's features to higher lrs (the EMA only drives
  the stop rule here);
- the stop rule measures divergence against the loss's own scale, so it works for negative losses;
- besides one lr it returns a (min, max) range for cyclic / one-cycle schedules and a ``status_`` that
  says how far to trust it; ``repeats`` gives a band of curves and the spread of the suggestion;
- model, optimizer and every RNG are restored bit for bit, also when the sweep raises.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from hyperflow.core.lr_curve import SUGGESTIONS, Curve, curve_status, lr_range, read_curve, suggest

STATUS_HELP = {
    "ok": "the curve has a clear descent and a cliff; the suggestion is trustworthy",
    "flat": "the loss barely moved over the sweep: check the data/model, or raise end_lr / num_iter",
    "no_divergence": "the loss never blew up, so the upper end of the range is unknown: raise end_lr",
    "noisy": "the suggestion is unstable (noisy curve or repeats disagree): use repeats=3, a larger "
    "batch_size or more num_iter, and prefer the lower end of the range",
}


def lr_schedule(start_lr: float, end_lr: float, num_iter: int, mode: str) -> np.ndarray:
    if mode == "exp":
        return np.geomspace(start_lr, end_lr, num_iter)
    return np.linspace(start_lr, end_lr, num_iter)


class LRFinder:
    """LR range test on a model, optimizer and loss; scikit-learn style: ``fit`` returns self and sets
    ``suggested_lr_``, ``lr_range_``, ``status_``, ``curves_`` (one per repeat), ``suggestions_``."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        *,
        start_lr: float = 1e-7,
        end_lr: float = 1.0,
        num_iter: int = 100,
        mode: str = "exp",
        batch_size: int = 64,
        suggestion: str = "descent",
        repeats: int = 1,
        smooth_window: float = 1.0,
        diverge_factor: float = 1.0,
        ema_beta: float = 0.9,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 0 < start_lr < end_lr:
            raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
        if suggestion not in SUGGESTIONS:
            raise ValueError(f"unknown suggestion '{suggestion}': choose one of {', '.join(SUGGESTIONS)}")
        if mode not in ("exp", "linear"):
            raise ValueError(f"unknown mode '{mode}': choose exp or linear")
        if num_iter < 10 or repeats < 1:
            raise ValueError("num_iter must be at least 10 and repeats at least 1")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.start_lr, self.end_lr, self.num_iter, self.mode = start_lr, end_lr, num_iter, mode
        self.batch_size, self.suggestion, self.repeats = batch_size, suggestion, repeats
        self.smooth_window, self.diverge_factor, self.ema_beta = smooth_window, diverge_factor, ema_beta
        self.seed, self.device = seed, torch.device(device)

    # ----------------------------------------------------------------------------------------- state
    def _snapshot(self) -> dict[str, Any]:
        state = {
            "model": copy.deepcopy(self.model.state_dict()),
            "training": self.model.training,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.model.train(state["training"])
        # a copy: load_state_dict keeps the given tensors, which the next sweep would then change in place
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state:
            torch.cuda.set_rng_state_all(state["cuda"])

    # ----------------------------------------------------------------------------------------- sweep
    def _sweep(
        self, X: torch.Tensor, y: torch.Tensor, seed: int, val: tuple[torch.Tensor, torch.Tensor] | None
    ) -> Curve:
        """One sweep. The lr is set on the optimizer directly at each step: a torch scheduler would add
        nothing here and would leave its own keys ('initial_lr') on the user's optimizer."""
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        planned = lr_schedule(self.start_lr, self.end_lr, self.num_iter, self.mode)
        order = torch.Generator().manual_seed(seed)
        n, bs = len(X), min(self.batch_size, len(X))
        perm, cursor = torch.randperm(n, generator=order), 0
        lrs, losses = [], []
        ema, best_ema, first_ema, stopped = 0.0, math.inf, None, False
        model.train()
        for step, lr in enumerate(planned):
            if cursor + bs > n:  # an epoch is shorter than the sweep: cycle through the data again
                perm, cursor = torch.randperm(n, generator=order), 0
            idx = perm[cursor : cursor + bs].to(self.device)
            cursor += bs
            for group in opt.param_groups:
                group["lr"] = float(lr)
            applied = opt.param_groups[0]["lr"]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if val is not None:
                model.eval()
                with torch.inference_mode():
                    loss = loss_fn(model(val[0]), val[1])
                model.train()
            value = float(loss.detach())
            lrs.append(applied)
            losses.append(value)
            if not math.isfinite(value):
                stopped = True
                break
            ema = self.ema_beta * ema + (1 - self.ema_beta) * value
            smoothed_now = ema / (1 - self.ema_beta ** (step + 1))
            first_ema = smoothed_now if first_ema is None else first_ema
            best_ema = min(best_ema, smoothed_now)
            # diverged: the loss rose above its best by the larger of its descent so far and its own size,
            # a scale that works for negative losses too (fastai's "4 x best" does not)
            scale = max(first_ema - best_ema, abs(best_ema), 1e-8)
            if step >= self.num_iter // 10 and smoothed_now > best_ema + self.diverge_factor * scale:
                stopped = True
                break
        return read_curve(np.array(lrs), np.array(losses), stopped, self.smooth_window)

    def fit(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        X_val: torch.Tensor | None = None,
        y_val: torch.Tensor | None = None,
        val_rows: int = 256,
    ) -> LRFinder:
        """Run ``repeats`` sweeps from the same initial state (different batch orders); with ``X_val``,
        record the loss of a fixed validation batch of ``val_rows`` rows instead of the training loss."""
        X, y = X.to(self.device), y.to(self.device)
        val = None
        if X_val is not None and y_val is not None and len(X_val):
            val = (X_val[:val_rows].to(self.device), y_val[:val_rows].to(self.device))
        state = self._snapshot()
        curves = []
        try:
            for r in range(self.repeats):
                curves.append(self._sweep(X, y, self.seed + r, val))
                self._restore(state)
        finally:
            self._restore(state)
        self.curves_ = curves
        self._summarise()
        return self

    def _summarise(self) -> None:
        curves = self.curves_
        length = min(len(c.lrs) for c in curves)
        lrs = curves[0].lrs[:length]
        stack = np.stack([c.smoothed[:length] for c in curves])
        mean = stack.mean(axis=0)
        self.lrs_ = lrs
        self.smoothed_ = mean
        self.losses_ = curves[0].losses[:length]
        self.band_ = (stack.min(axis=0), stack.max(axis=0)) if len(curves) > 1 else None
        self.suggestions_ = [suggest(c.lrs, c.smoothed, self.suggestion) for c in curves]
        combined = Curve(
            lrs, np.stack([c.losses[:length] for c in curves]).mean(axis=0), mean, any(c.stopped_early for c in curves)
        )
        self.suggested_lr_ = suggest(lrs, mean, self.suggestion)
        self.lr_range_ = lr_range(lrs, mean)
        status = curve_status(combined)
        spread = max(self.suggestions_) / min(self.suggestions_)
        self.suggestion_spread_ = float(spread)
        if status == "ok" and spread > 10**0.5:  # repeats disagree by more than half a decade
            status = "noisy"
        self.status_ = status
        self.stopped_early_ = combined.stopped_early

    @property
    def status_help_(self) -> str:
        return STATUS_HELP[self.status_]

    def to_frame(self) -> Any:
        """The curve as a table: step, lr, raw loss (first repeat), smoothed loss (mean over repeats)."""
        import pandas as pd

        frame = pd.DataFrame(
            {"step": np.arange(len(self.lrs_)), "lr": self.lrs_, "loss": self.losses_, "smoothed_loss": self.smoothed_}
        )
        if self.band_ is not None:
            frame["band_low"], frame["band_high"] = self.band_
        return frame
