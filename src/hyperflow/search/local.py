"""The local backend: hyperopt's ``fmin`` in this process, one trial at a time.

The trial's number is its hyperopt id (the id of the trial in flight), so a resumed search numbers and
seeds its trials as the uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any, Callable

from hyperopt import Trials


from hyperflow.search import hyperopt_records
from hyperflow.search.space import flatten, to_hyperopt
from hyperflow.search.trial import TrialRecord


def new_trials() -> Trials:
    return Trials()


def search_locally(run_point: Callable[[dict[str, Any], int | None], TrialRecord], space: dict[str, Any],
                   trials: Trials, suggest: Callable[..., list], max_evals: int, seed: int) -> None:
    """fmin over ``space`` in ``trials`` (filled and queued by the runner); ``run_point(point, number)`` runs
    and records one trial."""

    def objective(sample: dict[str, Any]) -> dict[str, Any]:
        record = run_point(flatten(sample), hyperopt_records.running_tid(trials))
        return hyperopt_records.trial_result(record)

    hyperopt_records.minimize(objective, to_hyperopt(space), trials, suggest, max_evals, seed, progressbar=True)
