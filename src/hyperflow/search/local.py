"""The local backend: hyperopt's ``fmin`` on this machine, one trial at a time in this process or ``N`` at once
in worker processes (:mod:`hyperflow.search.workers`).

The trial's number is its hyperopt id, so a resumed search numbers and seeds its trials as the
uninterrupted one would have. With workers, hyperopt's own loop (``FMinIter``) still drives the search: its
evaluation step is replaced by :class:`_ParallelIter`, which starts each new trial as soon as a worker is free
and returns as soon as one is, so every suggestion is made just in time, knowing every finished trial and the
trials in flight (trial documents in state RUNNING, which a sampler can treat as pending points).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, Trials, space_eval
from hyperopt.base import Domain, spec_from_misc
from hyperopt.fmin import FMinIter
from hyperopt.utils import coarse_utcnow

from hyperflow.search import hyperopt_records
from hyperflow.search.space import flatten, to_hyperopt
from hyperflow.search.trial import TrialRecord


def new_trials() -> Trials:
    return Trials()


def search_locally(
    run_point: Callable[[dict[str, Any], int | None], TrialRecord],
    space: dict[str, Any],
    trials: Trials,
    suggest: Callable[..., list],
    max_evals: int,
    seed: int,
) -> None:
    """fmin over ``space`` in ``trials`` (filled and queued by the runner); ``run_point(point, number)`` runs
    and records one trial."""

    def objective(sample: dict[str, Any]) -> dict[str, Any]:
        record = run_point(flatten(sample), hyperopt_records.running_tid(trials))
        return hyperopt_records.trial_result(record)

    hyperopt_records.minimize(objective, to_hyperopt(space), trials, suggest, max_evals, seed, progressbar=True)


class Dispatch:
    """What the parallel loop needs from the runner: whether a worker is free, starting a trial (number,
    point), and the trials finished since the last call (``block``: wait for one first) as (number, record)."""

    def __init__(
        self,
        free: Callable[[], bool],
        start: Callable[[int, dict[str, Any]], None],
        collect: Callable[[bool], list[tuple[int, TrialRecord]]],
        running: Callable[[], int],
    ) -> None:
        self.free, self.start, self.collect, self.running = free, start, collect, running


class _ParallelIter(FMinIter):
    """hyperopt's fmin loop with an evaluation step that runs trials on workers instead of in this process."""

    def __init__(self, dispatch: Dispatch, space: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatch, self.space = dispatch, space
        self.docs: dict[int, dict[str, Any]] = {}

    def serial_evaluate(self, N: int = -1) -> None:
        for doc in self.trials._dynamic_trials:
            if doc["state"] == JOB_STATE_NEW and self.dispatch.free():
                doc["state"], doc["book_time"] = JOB_STATE_RUNNING, coarse_utcnow()
                self.docs[doc["tid"]] = doc
                point = flatten(space_eval(self.space, spec_from_misc(doc["misc"])))
                self.dispatch.start(doc["tid"], point)
        self.trials.refresh()
        self.collect(block=not self.dispatch.free())

    def collect(self, block: bool) -> None:
        for number, record in self.dispatch.collect(block):
            doc = self.docs.pop(number)
            doc["result"], doc["state"] = hyperopt_records.trial_result(record), JOB_STATE_DONE
            doc["refresh_time"] = coarse_utcnow()
        self.trials.refresh()

    def drain(self) -> None:
        while self.dispatch.running():
            self.collect(block=True)


def search_in_parallel(
    dispatch: Dispatch, space: dict[str, Any], trials: Trials, suggest: Callable[..., list], max_evals: int, seed: int
) -> None:
    """fmin over ``space`` in ``trials`` with trials on workers, until ``max_evals`` trials (those in
    ``trials`` included) or the stop rule (in ``suggest``) ends it; returns when no trial is in flight."""
    hp_space = to_hyperopt(space)
    loop = _ParallelIter(
        dispatch,
        hp_space,
        suggest,
        Domain(lambda _: None, hp_space),
        trials,
        rstate=np.random.default_rng(seed),
        asynchronous=False,
        max_evals=max_evals,
        show_progressbar=False,
    )
    loop.exhaust()
    loop.drain()  # on an exception the runner stops the workers instead
