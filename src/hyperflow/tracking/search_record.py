"""The search run's own record, written to the active run (the search opens it with ``tracking.tracked_run`` in the
calling thread): its settings and space, each resume, the ``best_val_loss`` curve, the stop reason, the best
trial and its test metrics, the model's status, the trials table, and its page's links to the best trial and
its model. The LR range test for ``lr_bounds=auto`` is the lr_find workflow's run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.tracking import MlflowClient

from hyperflow import names, tracking
from hyperflow.core.data import Dataset
from hyperflow.tracking.experiments import run_page

PROGRESS_FLUSH_SECS = 5.0  # the parent's best_val_loss curve is sent in batches this often
NOTE_START = "**Best trial**"  # how the description hyperflow writes on a search run begins


class Progress:
    """The search run's ``best_val_loss`` curve (step = trials finished before), sent in batches every few seconds
    through ``send`` (the search's background calls)."""

    def __init__(self, run_id: str, send: Callable[..., Any]) -> None:
        self.run_id, self.send = run_id, send
        self.client = MlflowClient()
        self.points: list[Metric] = []
        self.sent = time.monotonic()

    def add(self, best: float, step: int) -> None:
        self.points.append(Metric(names.BEST_VAL_LOSS, best, int(time.time() * 1000), step))

    def flush(self, force: bool = False) -> None:
        if self.points and (force or time.monotonic() - self.sent >= PROGRESS_FLUSH_SECS):
            self.send(self.client.log_batch, self.run_id, metrics=self.points)
            self.points, self.sent = [], time.monotonic()


# ------------------------------------------------------------------------------ the search run (active)
def record_new_search(
    run_id: str,
    params: dict[str, str],
    tags: dict[str, str],
    space_path: Path | None,
    dataset: Dataset | None,
    space_text: str = "",
) -> None:
    """A new search: every setting as a param and the settings and space tags (one call, after one look-up:
    under ``mlflow run`` the run already holds the ``-P`` values), the space file (or ``space_text``: a space
    given as a mapping), the dataset (None: an objective's search, whose function loads its own)."""
    tracking.log_params(run_id, params, tags=tags)
    if space_path is not None:
        mlflow.log_artifact(str(space_path), "space")
    elif space_text:
        mlflow.log_text(space_text, "space/space.yaml")
    if dataset is not None:
        tracking.log_dataset(dataset)


def record_resume(run_id: str, n: int, tags: dict[str, str], params: dict[str, str], space_text: str | None) -> None:
    """Resume ``n``: the count first (a resume cut short never leaves ``n`` to the next), then what changed."""
    mlflow.set_tags({**tags, names.RESUMES: str(n)})
    if space_text is not None:
        mlflow.log_text(space_text, f"space/resume-{n}/space.yaml")
    if params:
        tracking.log_params(run_id, params)


def set_stop_reason(reason: str) -> None:
    mlflow.set_tag(names.STOP_REASON, reason)


def set_units_used(units: int) -> None:
    mlflow.log_metric(names.UNITS_USED, units)


def set_model_status(status: str) -> None:
    mlflow.set_tag(names.MODEL_STATUS, status)


def record_best(run_id: str, number: int, loss: float, params: dict[str, Any]) -> None:
    mlflow.set_tag(names.BEST_RUN_ID, run_id)
    mlflow.set_tags({f"{names.BEST_PARAM_PREFIX}{k}": str(v) for k, v in params.items()})
    mlflow.log_dict({"trial": number, "run_id": run_id, "val_loss": loss, "params": params}, "best_params.json")


def link_best(
    run_id: str,
    experiment_id: str,
    best: tuple[int, str, float],
    trials: str,
    model_id: str | None,
    registered: tuple[str, str] | None,
) -> None:
    """Link the search run's page in MLflow's UI to its best trial (``best``: number, run id, loss) and model: its
    description (``mlflow.note.content``, markdown: links to the trial's run and the registered version, ``trials``
    counted), unless someone else wrote one, and the model as the run's output (the page's *Logged models* and
    *Registered models*; once, though a resume links it again)."""
    number, best_run_id, loss = best
    lines = [f"{NOTE_START}: [trial {number}]({run_page(experiment_id, best_run_id)}), loss {loss:.6g} (of {trials})"]
    if registered is not None:
        name, version = registered
        lines.append(f"**Model**: [{name} version {version}](#/models/{quote(name)}/versions/{version})")
    elif model_id is not None:
        lines.append(f"**Model**: [{model_id}](#/experiments/{experiment_id}/models/{model_id}), not registered")
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.data.tags.get(names.NOTE, NOTE_START).startswith(NOTE_START):
        client.set_tag(run_id, names.NOTE, "\n\n".join(lines))
    linked = {m.model_id for m in (run.outputs.model_outputs if run.outputs else [])}
    if model_id is not None and model_id not in linked:
        client.log_outputs(run_id, [LoggedModelOutput(model_id, number)])


def best_test_metrics(search_run_id: str) -> dict[str, float]:
    """The best trial's test metrics as a search (perhaps cut short) logged them: ``test_*`` -> value."""
    metrics = MlflowClient().get_run(search_run_id).data.metrics
    return {k[len("best_") :]: v for k, v in metrics.items() if k.startswith(f"best_{names.TEST_PREFIX}")}


def log_test_metrics(best_run_id: str, test: dict[str, float]) -> None:
    """``best_test_*`` on the search run, ``test_*`` on the best trial's run."""
    mlflow.log_metrics({f"best_{k}": v for k, v in test.items()})
    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(best_run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in test.items()])


def log_trials_table(table: Any) -> None:
    """The trials as ``trials.csv`` (a pandas DataFrame)."""
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp, "trials.csv"), index=False)
        mlflow.log_artifact(str(Path(tmp, "trials.csv")))


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)
