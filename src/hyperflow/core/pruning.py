"""Pruning: stop hopeless trials early from their intermediate val_loss (no MLflow here).

- ``median``: the median stopping rule (Golovin et al., 2017, Google Vizier): from ``min_epochs`` on,
  stop a trial whose best val_loss so far is worse than the median of earlier trials' best val_loss
  at the same epoch, at ``patience`` epochs in a row (the idea of Optuna's ``PatientPruner``: replayed on
  curves trained to the end, most of the best trials the rule cut were level with the median but for one
  noisy epoch; bench/prune_replay.py).
- ``asha``: asynchronous successive halving (Li et al., 2020): at rungs ``min_epochs * rf**k`` a
  trial continues only if it is in the best ``1/rf`` of the trials that reached that rung.

hyperopt has neither; both are a few lines over the history of intermediate values, which the search
keeps (and rebuilds from MLflow on resume).
"""

from __future__ import annotations

import math

import numpy as np


class Pruner:
    """Decides from ``history`` (one list of per-epoch val_loss per earlier trial) and this trial's
    ``values`` so far whether to stop it at ``epoch``."""

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        raise NotImplementedError


class NoPruner(Pruner):
    """``pruner=none``: every trial runs its epochs."""

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        return False


class MedianPruner(Pruner):
    """The median stopping rule, from epoch ``min_epochs`` on. With ``patience`` > 1 a trial is stopped only
    once it has been behind the median at that many epochs in a row, ending at this one (at ``min_epochs=3``,
    ``patience=2``: epochs 2 and 3), so that one noisy epoch of a trial level with the median does not end it."""

    def __init__(self, min_epochs: int = 3, startup_trials: int = 4, patience: int = 1) -> None:
        self.min_epochs, self.startup_trials, self.patience = min_epochs, startup_trials, patience

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        if epoch < self.min_epochs:
            return False
        return all(self._behind(history, e, values) for e in range(max(1, epoch - self.patience + 1), epoch + 1))

    def _behind(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        peers = [min(h[:epoch]) for h in history if len(h) >= epoch]
        if len(peers) < self.startup_trials:
            return False
        return min(values[:epoch]) > float(np.median(peers))


class ASHAPruner(Pruner):
    def __init__(self, min_epochs: int = 3, reduction_factor: int = 3) -> None:
        self.min_epochs, self.rf = min_epochs, reduction_factor

    def is_rung(self, epoch: int) -> bool:
        if epoch < self.min_epochs:
            return False
        k = math.log(epoch / self.min_epochs, self.rf)
        return abs(k - round(k)) < 1e-9

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        if not self.is_rung(epoch):
            return False
        peers = sorted(min(h[:epoch]) for h in history if len(h) >= epoch)
        if len(peers) < self.rf:  # too few trials reached this rung to rank against
            return False
        keep = max(1, len(peers) // self.rf)
        return min(values) > peers[keep - 1]


def peer_statuses(name: str) -> tuple[str, ...]:
    """Whose curves a pruner compares with: the median rule uses finished trials only (with pruned ones
    among its peers it pruned 36 of 50 trials late in a search, bench/search.py); successive halving
    ranks every trial that reached a rung."""
    return ("ok",) if name == "median" else ("ok", "pruned")


def make_pruner(name: str, min_epochs: int, reduction_factor: int, startup_trials: int, patience: int) -> Pruner:
    if name == "median":
        return MedianPruner(min_epochs, startup_trials, patience)
    if name == "asha":
        return ASHAPruner(min_epochs, reduction_factor)
    if name == "none":
        return NoPruner()
    raise ValueError(f"unknown pruner {name!r}")
