"""One MLflow call each: tags and metrics of the active run; another run ended, or found by a tag."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.tracking import MlflowClient


def set_tag(key: str, value: Any) -> None:
    """A tag of the active run."""
    mlflow.set_tag(key, value)


def set_tags(tags: dict[str, Any]) -> None:
    """Tags of the active run, in one call."""
    mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float]) -> None:
    """Metrics of the active run (step 0), in one call."""
    mlflow.log_metrics(metrics)


def end_run(run_id: str, status: str, client: Any = None) -> None:
    """End run ``run_id`` as ``status`` (e.g. KILLED for a run whose process is gone)."""
    (client or MlflowClient()).set_terminated(run_id, status)


def runs_tagged(
    experiment_id: str, tag: str, value: str, *, finished: bool = False, max_results: int = 20, client: Any = None
) -> list[Any]:
    """Runs of an experiment whose tag ``tag`` is ``value`` (only FINISHED ones when ``finished``)."""
    query = f"tags.`{tag}` = '{value}'" + (" and attributes.status = 'FINISHED'" if finished else "")
    return (client or MlflowClient()).search_runs([experiment_id], query, max_results=max_results)
