"""hyperflow: train PyTorch networks with sound hyperparameters, every experiment tracked in MLflow.

``hyperflow.TrialPruned`` is what ``trial.report(step, value)`` raises in an objective of your own once the
pruner stops its trial."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``hyperflow.__version__`` and ``hyperflow.TrialPruned``, imported when asked: importlib.metadata takes ~50 ms
    to import, which every command would otherwise pay before its first line (a bad input's refusal included)."""
    if name == "TrialPruned":
        from hyperflow.search.trial import TrialPruned

        return TrialPruned
    if name != "__version__":
        raise AttributeError(f"module 'hyperflow' has no attribute {name!r}")
    from hyperflow.version import version

    return version()
