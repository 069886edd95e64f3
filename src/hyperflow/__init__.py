"""hyperflow: train PyTorch networks with sound hyperparameters, every experiment tracked in MLflow.

From Python, ``hyperflow.search(objective, space=..., **settings)`` searches a function of your own
(:func:`hyperflow.api.search`); ``hyperflow.TrialPruned`` is what ``trial.report(step, value)`` raises in it
once the pruner stops its trial."""

from __future__ import annotations

from typing import Any


def search(objective: Any, space: Any = None, **settings: Any) -> Any:
    """Minimise ``objective(params, trial)`` over ``space`` with the settings of ``hyperflow search``; returns a
    ``SearchResult`` (:func:`hyperflow.api.search`, imported when called: a command does not pay for it)."""
    from hyperflow.api import search as search_objective

    return search_objective(objective, space, **settings)


def __getattr__(name: str) -> Any:
    """``hyperflow.__version__``, ``hyperflow.TrialPruned`` and ``hyperflow.SearchResult``, imported when asked:
    every command would otherwise pay for them before its first line (a bad input's refusal included)."""
    if name == "TrialPruned":
        from hyperflow.engine.trial import TrialPruned

        return TrialPruned
    if name == "SearchResult":
        from hyperflow.api import SearchResult

        return SearchResult
    if name != "__version__":
        raise AttributeError(f"module 'hyperflow' has no attribute {name!r}")
    from hyperflow.version import version

    return version()
