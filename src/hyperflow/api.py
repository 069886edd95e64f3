"""hyperflow from Python: ``hyperflow.search(objective, space=..., **settings)`` searches a function of your own
as ``hyperflow search objective=...`` does, with the same settings (the same names, checked by the same fields)
and the same runs, and returns a :class:`SearchResult`. A bad setting raises :class:`UsageError` with the one
line the command line prints; a store that fails, :class:`SearchFailed`; Ctrl-C, KeyboardInterrupt (the
search's runs end KILLED; ``resume=<run_id>`` continues it).

The engine's package ``hyperflow.search`` is itself callable (``hyperflow/__init__.py``): ``hyperflow.search(...)``
is :func:`search` here."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperflow.engine.trial import TrialRecord
from hyperflow.errors import SearchFailed, UsageError

__all__ = ["SearchFailed", "SearchResult", "UsageError", "search"]


@dataclass
class SearchResult:
    """What a search found: the best trial's loss (``best_value``), its parameters and run, the search's run
    (``run_id``), every trial's record (``trials``: number, run_id, params, status, loss, epochs = steps reported,
    history, reason), why it stopped, the model registered (``registered``: (name, version)) and ``summary``,
    the lines ``hyperflow search`` prints."""

    run_id: str
    experiment_id: str
    best_value: float | None
    best_params: dict[str, Any]
    best_run_id: str | None
    trials: list[TrialRecord]
    stop_reason: str
    model_uri: str | None
    registered: tuple[str, str] | None
    summary: str

    def __repr__(self) -> str:
        return self.summary

    def __str__(self) -> str:
        return self.summary


def search(
    objective: Callable[..., Any] | str, space: Mapping[str, Any] | str | Path | None = None, **settings: Any
) -> SearchResult:
    """Minimise ``objective(params, trial)`` over ``space`` (a mapping in the shape of a YAML space file, or its
    path; a resume may leave it out). ``objective``: a callable, or ``"package.module:function"``. ``settings``:
    any of ``hyperflow search --help`` (``max_evals=40``, ``pruner="asha"``, ``parallelism=2``, ``budget=500``,
    ``resume=run_id``, ``config="settings.yaml"``, ...). With ``parallelism`` above 1 the trials run in worker
    processes, which must import or unpickle the function (not one defined in a notebook)."""
    from hyperflow.cli.parsing import invocation_of
    from hyperflow.cli.summaries import search_summary

    given = {k: v for k, v in settings.items()}
    function: Callable[..., Any] | None = None
    if isinstance(objective, str):
        given["objective"] = objective
    elif callable(objective):
        from hyperflow.workflows.search_objective import spec_of

        function, given["objective"] = objective, spec_of(objective)
    else:
        raise UsageError(f"objective must be a function or 'package.module:function', not {type(objective).__name__}")
    mapping = None
    if isinstance(space, (str, Path)):
        given["space"] = str(space)
    elif space is not None:
        mapping = dict(space)
    invocation = invocation_of("search", given)
    _check_store(invocation.train.experiment if invocation.train else None)
    from hyperflow.runtime import startup
    from hyperflow.workflows.search import search as run_search

    started = time.monotonic()
    startup.begin(at_exit=False)  # the heap as it is when the trials start is not collected again until the end
    try:
        outcome = run_search(
            invocation.search, invocation.train, given=invocation.given, function=function, space=mapping
        )
    finally:
        startup.restore()
        _forget_runs()
    best = outcome.best
    return SearchResult(
        run_id=outcome.run_id,
        experiment_id=outcome.experiment_id,
        best_value=best.loss if best else None,
        best_params=dict(best.params) if best else {},
        best_run_id=best.run_id if best else None,
        trials=outcome.records,
        stop_reason=outcome.stop_reason,
        model_uri=outcome.model_uri,
        registered=outcome.registered,
        summary=search_summary(outcome, time.monotonic() - started),
    )


def _check_store(experiment: str | None) -> None:
    """The command line's checks of the tracking store and the experiment, before any run is written."""
    from hyperflow.cli.checks import check_experiment
    from hyperflow.tracking import new_store

    new_store.check(reads_only=False)
    check_experiment(experiment)


def _forget_runs() -> None:
    from hyperflow import tracking

    tracking.forget_runs()  # the runs of this search only: the next call's interrupt names its own
