"""The ``search`` workflow: run (or resume) a hyperparameter search; the engine lives in ``hyperflow.search``."""

from __future__ import annotations

from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.search.runner import SearchOutcome, SearchRunner


def search(search_config: SearchConfig, base: TrainConfig) -> SearchOutcome:
    """Run (or resume) a search; bad input raises UsageError before any run is written."""
    return SearchRunner(search_config, base).run()
