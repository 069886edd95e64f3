"""Pruning: stop hopeless trials early from their intermediate val_loss (no MLflow here).

- ``median``: the median stopping rule (Golovin et al., 2017, Google Vizier): from ``min_epochs`` on,
  stop a trial whose best val_loss so far is worse than the median of earlier trials' best val_loss
  at the same epoch, at ``patience`` epochs in a row (the idea of Optuna's ``PatientPruner``: replayed on
  curves trained to the end, most of the best trials the rule cut were level with the median but for one
  noisy epoch; bench/prune_replay.py).
- ``asha``: asynchronous successive halving (Li et al., 2020): at rungs ``min_epochs * rf**k`` a
  trial continues only if it is in the best ``1/rf`` of the trials that reached that rung.
- ``hyperband``: brackets of successive halving (Li et al., 2018, as Optuna's ``HyperbandPruner``): bracket ``s``
  judges its trials first at ``min_epochs * rf**s``, then at every rung above, each against the trials of its
  own bracket only; the eager brackets get more trials, the patient ones hedge against early epochs that mislead.

hyperopt has none of them; each is a few lines over the history of intermediate values, which the search
keeps (and rebuilds from MLflow on resume). A peer is (trial number, curve): Hyperband's bracket is a
function of the trial's number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Peer = tuple[int, Sequence[float]]  # an earlier trial: its number and its per-epoch values
GOLDEN = (math.sqrt(5) - 1) / 2


class Pruner:
    """Decides from ``history`` (one list of per-epoch val_loss per earlier trial) and this trial's
    ``values`` so far whether to stop it at ``epoch``."""

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        raise NotImplementedError

    def judge(self, number: int, peers: Sequence[Peer], epoch: int, values: list[float]) -> bool:
        """Whether to stop trial ``number`` at ``epoch``, given the earlier trials (number, curve)."""
        return self.should_prune([list(curve) for _, curve in peers], epoch, values)


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


class HyperbandPruner(Pruner):
    """Brackets of successive halving. Their number, ``floor(log_rf(max / min_epochs)) + 1``, is known once a
    trial has run every epoch (``max``: the longest peer's curve, Optuna's ``max_resource="auto"``); until then
    no trial is pruned. Bracket ``s`` is ASHA with its first rung at ``min_epochs * rf**s``, ranking a trial
    against the trials of its bracket only. A trial's bracket is a function of its number alone, drawn with
    Hyperband's weights (bracket ``s`` of ``n``: ``ceil(n * rf**(n-1-s) / (n-s))``, the eager brackets more), so a
    resumed search puts each trial where the uninterrupted one did."""

    def __init__(self, min_epochs: int = 3, reduction_factor: int = 3) -> None:
        self.min_epochs, self.rf = min_epochs, reduction_factor

    def brackets(self, max_epochs: int) -> int:
        if max_epochs <= self.min_epochs:
            return 1
        return math.floor(math.log(max_epochs / self.min_epochs, self.rf) + 1e-9) + 1

    def bracket(self, number: int, brackets: int) -> int:
        """Trial ``number``'s bracket of ``brackets``, by Hyperband's weights (the golden ratio's multiples pick the
        slot: trials in a row spread evenly over the brackets)."""
        weights = [math.ceil(brackets * self.rf ** (brackets - 1 - s) / (brackets - s)) for s in range(brackets)]
        slot = int((number * GOLDEN) % 1.0 * sum(weights))
        for s, weight in enumerate(weights):
            if slot < weight:
                return s
            slot -= weight
        raise AssertionError("unreachable")

    def judge(self, number: int, peers: Sequence[Peer], epoch: int, values: list[float]) -> bool:
        longest = max((len(curve) for _, curve in peers), default=0)
        if longest <= epoch:  # no trial has run every epoch yet, or this one is at the end
            return False
        n = self.brackets(longest)
        s = self.bracket(number, n)
        same = [list(curve) for other, curve in peers if self.bracket(other, n) == s]
        return ASHAPruner(self.min_epochs * self.rf**s, self.rf).should_prune(same, epoch, values)

    def should_prune(self, history: list[list[float]], epoch: int, values: list[float]) -> bool:
        raise TypeError("HyperbandPruner judges a trial by its number: call judge()")


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
    if name == "hyperband":
        return HyperbandPruner(min_epochs, reduction_factor)
    if name == "none":
        return NoPruner()
    raise ValueError(f"unknown pruner {name!r}")
