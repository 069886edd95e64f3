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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

SUGGESTIONS = ("descent", "valley", "steep", "minimum")
STATUS_HELP = {
    "ok": "the curve has a clear descent and a cliff; the suggestion is trustworthy",
    "flat": "the loss barely moved over the sweep: check the data/model, or raise end_lr / num_iter",
    "no_divergence": "the loss never blew up, so the upper end of the range is unknown: raise end_lr",
    "noisy": "the suggestion is unstable (noisy curve or repeats disagree): use repeats=3, a larger "
    "batch_size or more num_iter, and prefer the lower end of the range",
}


@dataclass
class Curve:
    """One sweep: the lr applied at each step, the raw loss, and the smoothed loss."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped_early: bool


def smooth(log_lrs: np.ndarray, losses: np.ndarray, window: float) -> np.ndarray:
    """Centred running median then mean over a window of ``window`` decades of lr; near the ends the
    window shrinks symmetrically, so the last points are not averaged with earlier, lower ones only
    (which would drag the minimum onto the cliff).

    Written by hand because pandas/scipy windows count samples, not log-lr distance (a linear sweep is
    not evenly spaced in log-lr); the median first removes single-batch spikes, the mean then smooths.
    """
    lo, hi = log_lrs[0], log_lrs[-1]
    near = []
    for x in log_lrs:
        half = min(window / 2, x - lo, hi - x)
        near.append(np.abs(log_lrs - x) <= half + 1e-12)
    medians = np.array([np.median(losses[m]) for m in near])
    return np.array([medians[m].mean() for m in near])


def read_curve(lrs: np.ndarray, losses: np.ndarray, stopped_early: bool, window: float = 1.0) -> Curve:
    """A sweep's points up to its first non-finite loss, and their smoothed losses."""
    bad = np.nonzero(~np.isfinite(losses))[0]
    if len(bad):
        lrs, losses, stopped_early = lrs[: bad[0]], losses[: bad[0]], True
    if len(losses) < 3:
        raise FloatingPointError(
            "the loss was not finite from the start of the sweep: lower start_lr, or check the data and the model"
        )
    return Curve(lrs, losses, smooth(np.log10(lrs), losses, window), stopped_early)


def lr_schedule(start_lr: float, end_lr: float, num_iter: int, mode: str) -> np.ndarray:
    if mode == "exp":
        return np.geomspace(start_lr, end_lr, num_iter)
    return np.linspace(start_lr, end_lr, num_iter)


def _descent_start(smoothed: np.ndarray, lowest: int, fraction: float = 0.1) -> int:
    """First point where the smoothed loss has fallen by ``fraction`` of its total descent."""
    descent = smoothed[0] - smoothed[lowest]
    moving = np.nonzero(smoothed[: lowest + 1] <= smoothed[0] - fraction * descent)[0]
    return int(moving[0]) if len(moving) else 0


def _valley(log_lrs: np.ndarray, smoothed: np.ndarray, lowest: int) -> int:
    """The middle (in log-lr) of the descending wall of the valley: from where the loss starts to fall
    (10% of the descent) to its minimum. Like fastai's `valley` (the middle of the longest decreasing
    stretch), but the flat start of the sweep, where tiny noise-driven decreases lengthen fastai's
    stretch, does not pull it to low lrs."""
    start = _descent_start(smoothed, lowest)
    middle = (log_lrs[start] + log_lrs[lowest]) / 2
    return int(np.argmin(np.abs(log_lrs[: lowest + 1] - middle)))


def _steep(log_lrs: np.ndarray, smoothed: np.ndarray, upto: int) -> int:
    """The steepest descent of the smoothed loss w.r.t. log10(lr), before its minimum."""
    if upto < 2:
        return 0
    slope = np.gradient(smoothed[: upto + 1], log_lrs[: upto + 1])
    return int(np.argmin(slope))


def suggest(lrs: np.ndarray, smoothed: np.ndarray, rule: str) -> float:
    """The lr a rule reads off a smoothed curve.

    ``descent`` (default): where the loss has done 20% of its fall, clipped to [1/100, 1/10] of the lr at
    the minimum. The best constant lr tracks where the loss starts to fall, not the minimum, which sits
    near the same lr whatever the data (bench/lr_finder.py: mean regret 1.13 / 1.06 / 1.02 on digits,
    diabetes and a synthetic set, where `valley` gave 1.59 / 1.32 / 1.42 and `minimum` 1.16 / 1.62 / 1.14).
    """
    lowest = int(np.argmin(smoothed))
    if rule == "descent":
        at_minimum = lrs[lowest]
        start = float(lrs[_descent_start(smoothed, lowest, 0.2)])
        return float(np.clip(start, at_minimum / 100, at_minimum / 10))
    if rule == "minimum":
        return float(lrs[lowest] / 10)
    if rule == "steep":
        return float(lrs[_steep(np.log10(lrs), smoothed, lowest)])
    return float(lrs[_valley(np.log10(lrs), smoothed, lowest)])


def lr_range(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """(min, max) for cyclic / one-cycle schedules, after Smith (2017): max where the loss is still
    falling well short of its minimum (a third of the lr at the minimum, safely below the cliff); min
    where the loss starts to fall (10% of the descent), at least max / 30 and at most max / 3."""
    lowest = int(np.argmin(smoothed))
    top = float(lrs[lowest] / 3)
    bottom = float(lrs[_descent_start(smoothed, lowest)])
    return float(min(max(bottom, top / 30), top / 3)), top


def curve_status(curve: Curve) -> str:
    """flat / no_divergence / noisy / ok for one sweep (see STATUS_HELP)."""
    s, raw = curve.smoothed, curve.losses
    lowest = int(np.argmin(s))
    descent = s[0] - s[lowest]
    steps = np.diff(raw)  # batch-to-batch noise, independent of the smoothing: robust std of the steps / sqrt 2
    noise = float(np.median(np.abs(steps - np.median(steps)))) * 1.4826 / np.sqrt(2) if len(steps) > 2 else 0.0
    scale = max(abs(s[0]), abs(s[lowest]), 1e-12)
    if descent < max(0.02 * scale, noise):
        return "flat"
    rise = s[lowest:].max() - s[lowest]
    if not curve.stopped_early and (rise < 0.5 * descent or lowest >= len(s) - 3):
        return "no_divergence"
    if noise > 0.25 * descent:
        return "noisy"
    return "ok"


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
