"""hyperflow: train PyTorch networks with sound hyperparameters, every experiment tracked in MLflow.

From Python, ``hyperflow.search(objective, space=..., **settings)`` searches a function of your own
(:func:`hyperflow.api.search`); ``hyperflow.TrialPruned`` is what ``trial.report(step, value)`` raises in it
once the pruner stops its trial."""

from __future__ import annotations

import types
from typing import Any

from hyperflow import search as _engine  # the search engine's package (its __init__ imports nothing)


class _CallableSearch(types.ModuleType):
    """``hyperflow.search`` is the engine's package and, called, the Python API: the package is set as an
    attribute of ``hyperflow`` whenever one of its modules is imported, so the function could not keep the name."""

    def __call__(self, objective: Any, space: Any = None, **settings: Any) -> Any:
        """``hyperflow.api.search``: minimise ``objective(params, trial)`` over ``space``; returns a SearchResult."""
        from hyperflow.api import search

        return search(objective, space, **settings)


_engine.__class__ = _CallableSearch


def __getattr__(name: str) -> Any:
    """``hyperflow.__version__``, ``hyperflow.TrialPruned`` and ``hyperflow.SearchResult``, imported when asked:
    every command would otherwise pay for them before its first line (a bad input's refusal included)."""
    if name == "TrialPruned":
        from hyperflow.search.trial import TrialPruned

        return TrialPruned
    if name == "SearchResult":
        from hyperflow.api import SearchResult

        return SearchResult
    if name != "__version__":
        raise AttributeError(f"module 'hyperflow' has no attribute {name!r}")
    from hyperflow.version import version

    return version()
