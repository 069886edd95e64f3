"""An LR range test's curve read: raw losses smoothed with a window centred in log-lr (after the sweep: an
exponential moving average lags and shifts the curve's features to higher lrs), the suggested lr by rule,
a (min, max) range for cyclic / one-cycle schedules, and a status that says how far to trust them.

Pure numpy, no torch, no MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUGGESTIONS = ("descent", "valley", "steep", "minimum")


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
    """flat / no_divergence / noisy / ok for one sweep (see :data:`hyperflow.core.lr_finder.STATUS_HELP`)."""
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
