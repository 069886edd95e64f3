"""``strategy=bayes``: a multivariate, conditional, multi-fidelity TPE behind hyperopt's ``algo`` interface.

The Tree-structured Parzen Estimator (Bergstra et al., 2011, "Algorithms for hyper-parameter optimization")
ranks the trials, calls the best ``gamma`` of them good and the rest bad, fits a kernel density to each (l(x)
and g(x)), draws candidates from l and proposes the one with the highest l(x) / g(x), the ratio that orders
candidates as expected improvement does. hyperopt's ``tpe`` models every parameter on its own and counts
``ceil(0.25 sqrt(n))`` trials as good; this one follows what Optuna's TPE (v5 defaults) and Watanabe (2023,
"Tree-structured Parzen estimator: understanding its algorithm components and their roles for better
empirical performance") found to work better:

- **Joint model** (Falkner et al., 2018, BOHB; Optuna's ``multivariate=True``): one kernel per trial over all
  its parameters (a product of a truncated Gaussian per number, in [0, 1] coordinates, log for loguniform,
  bins for quniform/int, and a smoothed one-hot per choice), so that a good lr is proposed with the batch size
  and optimizer it was good with.
- **Conditional groups** (Optuna's ``group=True``, nested as hyperopt spaces are): the parameters a trial has
  are proposed level by level: first those every trial has, then those the chosen branch switches on, drawn
  from the joint model *conditioned on the values already chosen* (each trial's kernel weighted by its
  likeness there), so sgd's momentum follows the lr it was paired with.
- **Split and kernels** (Watanabe 2023; Optuna 5's defaults): ``ceil(0.1 n)`` trials good (at most 25), a
  prior kernel (the whole range) of weight 1 in both densities, each kernel's bandwidth the larger gap to its
  neighbours (Bergstra et al. 2011; on this space it beat the Scott-like ``0.2 n^(-1/(d+4))`` of Optuna 3)
  clipped below at ``1 / min(100, n + 2)`` ("magic clip"), older trials weighed down past 25, 24 candidates.
- **Multi-fidelity** (BOHB; Optuna's TPE ranks pruned trials so): finished trials rank first by loss, pruned
  ones after them, those that trained longer first, then by the loss they reached; a trial pruned early thus
  still tells the model its region is bad. Failed trials count as bad too.
- **Pending trials** (constant liar, Ginsbourger et al., 2010; Optuna's ``constant_liar=True``): trials queued
  or running count as bad, so parallel workers (and a batch of new ids) do not propose the same region.

Measured (docs/benchmarks.md, "Search quality"): on the digits bench it did not beat hyperopt's ``tpe``, which
stays the default: with 1-2 good trials the joint kernel keeps the choices of the first good trial together
and the search stays in that basin, where hyperopt's per-parameter model mixes several.

The first ``n_startup_jobs`` finished trials are drawn uniformly. Each suggestion comes from its own
``numpy`` generator seeded by the caller (hyperflow: from the search's seed and the trial id), so the same
history gives the same proposal: a resumed search proposes what the uninterrupted one would have.

Works on the parameters of any hyperopt space built from ``uniform``, ``loguniform``, ``quniform`` and
``choice``/``randint`` (hyperflow's YAML spaces are), read with ``hyperopt.pyll_utils.expr_to_config``;
returns hyperopt ``vals`` (label -> [value], [] when a conditional leaves it out).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK
from hyperopt.pyll_utils import expr_to_config
from scipy.special import logsumexp, ndtr, ndtri

N_CANDIDATES = 24
GOOD_FRACTION, MAX_GOOD = 0.1, 25
PRIOR_WEIGHT = 1.0
FULL_WEIGHT_TRIALS = 25  # Optuna's default_weights: the latest 25 trials weigh 1, older ones ramp down


@dataclass(frozen=True)
class Param:
    """One hyperopt parameter: ``float`` in [low, high] (log scale when ``log``), ``step`` multiples of ``q``
    from ``low`` to ``high``, or ``cat`` (``n`` indices); active when one of ``conditions`` (each a tuple of
    (label, value) that must all hold) holds."""

    label: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    q: float = 1.0
    n: int = 0
    conditions: tuple[tuple[tuple[str, Any], ...], ...] = ((),)

    @property
    def bins(self) -> int:
        return (
            self.n
            if self.kind == "cat"
            else (round(self.high / self.q - self.low / self.q) + 1 if self.kind == "step" else 0)
        )

    def to_unit(self, value: float) -> float:
        """The value in model coordinates: [0, 1] (a bin's centre for steps), a choice's index."""
        if self.kind == "cat":
            return float(value)
        if self.kind == "step":
            k = min(max(round(float(value) / self.q - self.low / self.q), 0), self.bins - 1)
            return (k + 0.5) / self.bins
        x = math.log(value) if self.log else float(value)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        return min(max((x - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 0.5

    def from_unit(self, u: float) -> Any:
        if self.kind == "cat":
            return int(u)
        if self.kind == "step":
            k = min(int(u * self.bins), self.bins - 1)
            return float(round((self.low / self.q + k) * self.q, 12))
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        x = lo + min(max(u, 0.0), 1.0) * (hi - lo)
        return float(min(max(math.exp(x) if self.log else x, self.low), self.high))

    def active(self, chosen: dict[str, Any]) -> bool:
        return any(all(chosen.get(name) == value for name, value in conj) for conj in self.conditions)

    def decided(self, done: set[str]) -> bool:
        return all(name in done for conj in self.conditions for name, _ in conj)


def parameters(expr: Any) -> list[Param]:
    """The parameters of a hyperopt space expression (``domain.expr``), in a fixed order."""
    hps: dict[str, Any] = {}
    expr_to_config(expr, (True,), hps)
    out = []
    for label in sorted(hps):
        node = hps[label]["node"]
        args = [a.obj for a in node.pos_args]
        conds = tuple(sorted(tuple((c.name, c.val) for c in conj[1:]) for conj in hps[label]["conditions"]))
        if node.name == "randint":
            low, high = (0, args[0]) if len(args) == 1 else args
            if low != 0:
                raise ValueError(f"strategy=bayes: '{label}' is randint({low}, {high}); use strategy=tpe")
            out.append(Param(label, "cat", n=int(high), conditions=conds))
        elif node.name in ("uniform", "loguniform"):
            low, high = (math.exp(a) for a in args[:2]) if node.name == "loguniform" else args[:2]
            out.append(Param(label, "float", float(low), float(high), node.name == "loguniform", conditions=conds))
        elif node.name == "quniform":
            low, high, q = (float(a) for a in args[:3])
            kmin, kmax = math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9)
            if kmin > kmax:
                kmin = kmax = round((low + high) / 2 / q)
            out.append(Param(label, "step", kmin * q, kmax * q, q=q, conditions=conds))
        else:
            raise ValueError(
                f"strategy=bayes models uniform, loguniform, quniform and choice, not {node.name} "
                f"('{label}'): use strategy=tpe"
            )
    return out


# ------------------------------------------------------------------------------------------ the history


@dataclass
class Observed:
    tid: int
    point: dict[str, float]  # label -> model coordinate, the labels the trial had
    rank: tuple = ()  # sort key among ranked trials; () = bad whatever its loss (failed, pending)


def observations(params: Sequence[Param], docs: Iterable[dict[str, Any]]) -> tuple[list[Observed], list[Observed]]:
    """(ranked, unranked) trials of hyperopt's docs: finished ones (ok, then pruned by epochs trained and loss)
    and failed or pending (queued, running) ones, which count as bad."""
    by_label = {p.label: p for p in params}
    ranked, unranked = [], []
    for doc in docs:
        vals = doc["misc"]["vals"]
        point = {k: by_label[k].to_unit(v[0]) for k, v in vals.items() if v and k in by_label}
        result, state = doc.get("result") or {}, doc.get("state")
        loss = result.get("loss")
        if state in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            unranked.append(Observed(doc["tid"], point))
        elif state == JOB_STATE_DONE and result.get("status") == STATUS_OK and loss is not None and math.isfinite(loss):
            pruned = result.get("trial_status") == "pruned"
            depth = -len(result.get("history") or ()) if pruned else 0
            ranked.append(Observed(doc["tid"], point, (pruned, depth, float(loss), doc["tid"])))
        elif state == JOB_STATE_DONE and result.get("status") in (STATUS_FAIL, STATUS_OK):
            unranked.append(Observed(doc["tid"], point))
    return sorted(ranked, key=lambda o: o.rank), unranked


def split(ranked: list[Observed], unranked: list[Observed]) -> tuple[list[Observed], list[Observed]]:
    n_good = min(math.ceil(GOOD_FRACTION * len(ranked)), MAX_GOOD)
    return ranked[:n_good], ranked[n_good:] + unranked


# ------------------------------------------------------------------------------------------ the densities


class Mixture:
    """A Parzen estimator over ``params``: one product kernel per observation plus the prior's."""

    def __init__(self, params: Sequence[Param], obs: Sequence[Observed]) -> None:
        self.params = list(params)
        order = sorted(obs, key=lambda o: o.tid)
        n = len(order)
        ramp = np.linspace(1.0 / n, 1.0, n - FULL_WEIGHT_TRIALS) if n > FULL_WEIGHT_TRIALS else np.ones(0)
        weights = np.concatenate([ramp, np.ones(n - len(ramp)), [PRIOR_WEIGHT]])
        self.logw = np.log(weights / weights.sum())
        floor = 1.0 / min(100, n + 2)  # the "magic clip"
        self.centre: dict[str, np.ndarray] = {}
        self.sigma: dict[str, np.ndarray] = {}
        self.table: dict[str, np.ndarray] = {}  # choice -> [kernel, n] probabilities
        for p in self.params:
            x = np.array([o.point[p.label] for o in order])
            if p.kind == "cat":
                t = np.full((n + 1, p.n), PRIOR_WEIGHT / (n + 1))
                t[np.arange(n), x.astype(int)] += 1.0
                self.table[p.label] = t / t.sum(axis=1, keepdims=True)
            else:
                self.centre[p.label] = np.append(x, 0.5)
                self.sigma[p.label] = np.clip(np.append(gaps(x), 1.0), floor, 1.0)

    def log_kernels(self, points: np.ndarray, params: Sequence[Param]) -> np.ndarray:
        """[m, kernels]: each kernel's log density at ``points`` ([m, len(params)]) over ``params`` only."""
        out = np.zeros((points.shape[0], len(self.logw)))
        for j, p in enumerate(params):
            x = points[:, j : j + 1]
            if p.kind == "cat":
                out += np.log(self.table[p.label][:, x[:, 0].astype(int)].T)
                continue
            mu, s = self.centre[p.label], self.sigma[p.label]
            z = ndtr((1.0 - mu) / s) - ndtr(-mu / s)  # the kernels are truncated to [0, 1]
            if p.kind == "step":
                k = np.floor(x * p.bins)
                mass = ndtr(((k + 1) / p.bins - mu) / s) - ndtr((k / p.bins - mu) / s)
                out += np.log(np.maximum(mass, 1e-300)) - np.log(z)
            else:
                out += -0.5 * ((x - mu) / s) ** 2 - np.log(s * math.sqrt(2 * math.pi) * z)
        return out

    def sample(self, rng: np.random.Generator, count: int, context: np.ndarray, params: Sequence[Param]) -> np.ndarray:
        """``count`` draws over ``params`` from the mixture conditioned on the chosen values (``context``:
        each kernel's log density there)."""
        logp = self.logw + context
        kernels = rng.choice(len(logp), size=count, p=np.exp(logp - logsumexp(logp)))
        out = np.empty((count, len(params)))
        for j, p in enumerate(params):
            if p.kind == "cat":
                t = self.table[p.label][kernels]
                out[:, j] = (rng.random(count)[:, None] > np.cumsum(t, axis=1)[:, :-1]).sum(axis=1)
            else:
                out[:, j] = truncated_normal(rng, self.centre[p.label][kernels], self.sigma[p.label][kernels])
        return out


def gaps(x: np.ndarray) -> np.ndarray:
    """Each point's bandwidth: the larger gap to its neighbours in [0, 1] (Bergstra et al. 2011; Optuna 5 uses
    it in the joint model too), the ends' gaps taken inside once there are two points or more."""
    if len(x) == 0:
        return x
    order = np.argsort(x)
    ends = np.concatenate([[0.0], x[order], [1.0]])
    sig = np.maximum(ends[1:-1] - ends[:-2], ends[2:] - ends[1:-1])
    if len(x) >= 2:
        sig[0], sig[-1] = ends[2] - ends[1], ends[-2] - ends[-3]
    out = np.empty_like(sig)
    out[order] = sig
    return out


def truncated_normal(rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Draws from normals truncated to [0, 1], by the inverse CDF."""
    lo, hi = ndtr(-mu / sigma), ndtr((1.0 - mu) / sigma)
    u = lo + rng.random(mu.shape) * (hi - lo)
    return np.clip(mu + sigma * ndtri(np.clip(u, 1e-12, 1 - 1e-12)), 0.0, np.nextafter(1.0, 0.0))


# ------------------------------------------------------------------------------------------ suggestions


def propose(
    params: Sequence[Param],
    good: list[Observed],
    bad: list[Observed],
    rng: np.random.Generator,
    startup: bool,
    candidates: int = N_CANDIDATES,
) -> dict[str, Any]:
    """One point (label -> value, the active labels only), level by level through the conditionals."""
    chosen: dict[str, Any] = {}  # label -> model coordinate
    done: set[str] = set()
    while True:
        ready = [p for p in params if p.label not in done and p.decided(done)]
        if not ready:
            break
        group = [p for p in ready if p.active(chosen)]
        done.update(p.label for p in ready)
        if not group:
            continue
        if startup:
            unit = np.array([[rng.integers(p.n) if p.kind == "cat" else rng.random() for p in group]])[0]
        else:
            unit = _best_candidate(params, group, chosen, good, bad, rng, candidates)
        chosen.update({p.label: float(u) for p, u in zip(group, unit)})
    by_label = {p.label: p for p in params}
    return {label: by_label[label].from_unit(u) for label, u in chosen.items()}


def _best_candidate(
    params: Sequence[Param],
    group: list[Param],
    chosen: dict[str, float],
    good: list[Observed],
    bad: list[Observed],
    rng: np.random.Generator,
    candidates: int,
) -> np.ndarray:
    labels = {p.label for p in group}
    models = []
    for obs in (good, bad):
        obs = [o for o in obs if labels <= o.point.keys()]
        context = [p for p in params if p.label in chosen and all(p.label in o.point for o in obs)]
        mixture = Mixture(context + group, obs)
        at = np.array([[chosen[p.label] for p in context]])
        models.append((mixture, mixture.log_kernels(at, context)[0]))
    (lm, lctx), (gm, gctx) = models
    draws = lm.sample(rng, candidates, lctx, group)
    score = logsumexp(lm.logw + lctx + lm.log_kernels(draws, group), axis=1) - logsumexp(
        gm.logw + gctx + gm.log_kernels(draws, group), axis=1
    )
    return draws[int(np.argmax(score))]


def suggest(
    new_ids: Sequence[int], expr: Any, docs: Sequence[dict[str, Any]], seeds: Sequence[int], n_startup_jobs: int
) -> list[tuple[int, dict[str, list]]]:
    """(tid, hyperopt ``vals``) for each new id, the one before it counted as pending (constant liar);
    ``seeds[i]`` seeds the draw for ``new_ids[i]``."""
    params = parameters(expr)
    ranked, unranked = observations(params, docs)
    out = []
    for tid, seed in zip(new_ids, seeds):
        good, bad = split(ranked, unranked)
        point = propose(params, good, bad, np.random.default_rng(seed), startup=len(ranked) < n_startup_jobs)
        vals = {p.label: [point[p.label]] if p.label in point else [] for p in params}
        out.append((tid, vals))
        unranked = [
            *unranked,
            Observed(
                tid, {p.label: p.to_unit(v) for p, v in ((q, point[q.label]) for q in params if q.label in point)}
            ),
        ]
    return out
