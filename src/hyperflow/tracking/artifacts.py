"""Artifacts and inputs of a run: figures, JSON and folders, the dataset as the run's training input, and
the LR range test's curve, suggestion and plot."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.core.data import Dataset
from hyperflow.tracking.runs import log_params, run_tags, tracked_run, unique_run_name


def log_dataset(dataset: Dataset) -> None:
    """Record the dataset as the run's training input (name, digest, source, schema)."""
    source: Any = dataset.source
    if source.startswith("builtin:"):  # no file or URL behind it: describe it by name and version
        source = CodeDatasetSource({names.BUILTIN_DATASET: dataset.name, "fingerprint": dataset.fingerprint})
    with warnings.catch_warnings():
        # MLflow's schema hint about integer columns concerns model signatures, not a dataset record, and a
        # local path matches two of its (identical) source types
        warnings.filterwarnings("ignore", message=".*(integer column|interpreted in multiple ways).*")
        if isinstance(dataset.raw_all, pd.DataFrame):
            data = mlflow.data.from_pandas(dataset.raw_all, source=source, targets=dataset.target,
                                           name=dataset.name)
        else:
            X, y = dataset.raw_all
            data = mlflow.data.from_numpy(X, targets=y, source=source, name=dataset.name)
        mlflow.log_input(data, context="training", tags={"fingerprint": dataset.fingerprint})


def log_figure(figure: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def log_lr_finder(run_id: str, finder: Any, rule: str) -> None:
    """The range test's curve (step = iteration), suggestion, range, status and its plot and CSV."""
    from hyperflow.core.lr_finder import STATUS_HELP
    from hyperflow.core.plots import lr_finder_curve

    stamp = int(time.time() * 1000)
    metrics = [Metric(names.LR_FIND_LOSS, float(v), stamp, i) for i, v in enumerate(finder.losses_)]
    metrics += [Metric(names.LR_FIND_SMOOTHED_LOSS, float(v), stamp, i) for i, v in enumerate(finder.smoothed_)]
    metrics += [Metric(names.LR_FIND_LR, float(v), stamp, i) for i, v in enumerate(finder.lrs_)]
    metrics += [Metric(names.SUGGESTED_LR, finder.suggested_lr_, stamp, 0),
                Metric(names.LR_RANGE_MIN, finder.lr_range_[0], stamp, 0),
                Metric(names.LR_RANGE_MAX, finder.lr_range_[1], stamp, 0),
                Metric(names.LR_FIND_SUGGESTION_SPREAD, finder.suggestion_spread_, stamp, 0)]
    client = MlflowClient()
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, names.LR_FIND_STATUS, finder.status_)
    client.set_tag(run_id, names.LR_FIND_STATUS_HELP, STATUS_HELP[finder.status_])
    figure = lr_finder_curve(finder.lrs_, finder.losses_, finder.smoothed_, finder.suggested_lr_, finder.lr_range_,
                             finder.status_, finder.band_, rule)
    log_figure(figure, "plots/lr_find.png")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "lr_find.csv")
        finder.to_frame().to_csv(path, index=False)
        client.log_artifact(run_id, str(path))


def log_dict(data: Any, path: str) -> None:
    """A dict as a JSON (or YAML, by suffix) artifact of the active run."""
    mlflow.log_dict(data, path)


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_artifact(local_path: str, folder: str | None = None) -> None:
    """A file as an artifact of the active run (under ``folder``)."""
    mlflow.log_artifact(local_path, folder)


def log_artifacts(local_dir: str, folder: str | None = None) -> None:
    """A folder's files as artifacts of the active run (under ``folder``)."""
    mlflow.log_artifacts(local_dir, folder)


def lr_range_test_run(setup: Any, parent_run_id: str | None = None) -> tuple[Any, Any]:
    """The LR range test on a ready setup in a run of its own (role ``lr_find``; a child named ``lr_find``
    when ``parent_run_id`` is given): params, the curve, the suggestion and the plot. Returns the run and the
    fitted finder. The one implementation: the lr_find workflow, ``lr=auto`` and ``lr_bounds=auto`` use it."""
    from hyperflow.core.assembly import run_lr_finder

    c = setup.config
    name = "lr_find" if parent_run_id else c.run_name or unique_run_name(names.ROLE_LR_FIND, setup.dataset.name)
    with tracked_run(names.ROLE_LR_FIND, experiment=c.experiment, parent_run_id=parent_run_id,
                     tags=run_tags(setup.dataset), run_name=name) as run:
        log_params(run.info.run_id, c.to_params())
        finder = run_lr_finder(setup)
        log_lr_finder(run.info.run_id, finder, c.suggestion)
    return run, finder
