"""What a search hands back: its outcome, the one-line failure the CLI prints (exit 1), or the interrupt that
names the run a resume continues."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hyperflow import tracking

if TYPE_CHECKING:  # a resume's first check reads the store without importing the trainer (torch)
    from hyperflow.engine.trial import TrialRecord


@dataclass
class SearchOutcome:
    run_id: str
    experiment_id: str
    records: list[TrialRecord]
    best: TrialRecord | None
    stop_reason: str
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    model_id: str | None = None  # the logged model's id (MLflow 3), when there is one
    registered: tuple[str, str] | None = None  # (name, version)
    at_once: int = 1  # trials run at once (parallelism, resolved for this machine)
    objective: str = ""  # the function searched (package.module:function), or '' for hyperflow's trainer
    model_note: str = ""  # why no model was registered, when a search could not (e.g. no trial logged one)
    units: int = 0  # units of work the trials used: epochs (hyperflow's trainer) or reported steps (an objective)
    budget: int = 0  # the search's budget of units (0: none)


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM once the search run exists (its runs ended KILLED); ``run_id``: the run to resume."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


def search_store_failure(exc: BaseException, artifact_uri: str, parent: str | None) -> str:
    """The one line for a store that failed during the search ``parent`` (None: before anything was written)."""
    store = tracking.failed_store(exc)
    tracking_store = f"the tracking store {tracking.tracking_uri()}"
    where = {
        "tracking": tracking_store,
        "artifacts": f"the artifact store {artifact_uri}" if artifact_uri else tracking_store,
    }.get(store, store)
    message = f"{where} failed: {tracking.store_error_text(exc)}"
    if not parent:
        return message + "; nothing was written: run the search again once the store works"
    return (
        f"{message}; search run {parent} keeps the trials whose results reached the store (runs that could "
        f"not be marked stay RUNNING until the resume ends them); once the store works, continue with: "
        f"hyperflow search resume={parent}"
    )
