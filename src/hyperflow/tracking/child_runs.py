"""Child runs: made with the client for hyperflow's trainer (no thread-local active run: safe in threads and on
Spark executors; their calls sent at once or queued in the background), or opened as this thread's active run for
the user's objective; they end as parent runs do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.tracking.background_calls import PendingRun, call_now
from hyperflow.tracking.run_ends import ended_as
from hyperflow.tracking.runs import ROLE_TAG, _env, creation_tag, end_run_quietly
from hyperflow.version import version


@contextmanager
def child_run(
    role: str,
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    tags: dict[str, str],
    send: Callable[..., Any] = call_now,
) -> Iterator[PendingRun]:
    """A child run made with the client, not the fluent API: no thread-local active run (safe in threads and
    on Spark executors) and none of the fluent start's context providers (a trial is cheap to open). Ends
    FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM.

    ``send`` decides when the calls go out: ``call_now``, or ``BackgroundCalls.submit`` so that creating the
    run and ending it overlap training; it returns the call's result or a Future of it. Start and end times
    are taken here, so a call sent later still records when the run started and ended."""
    client = MlflowClient()
    created = send(
        client.create_run,
        experiment_id,
        start_time=int(time.time() * 1000),
        run_name=run_name,
        tags=_child_tags(role, parent_run_id, run_name, tags),
    )
    if created is None:
        raise TypeError("child_run's send must return the call's result or a Future of it")
    run = PendingRun(created)

    def end(status: str) -> None:
        ended = int(time.time() * 1000)
        try:
            send(end_run_quietly, run, status, ended)
        except Exception:
            if status == "FINISHED":
                raise
            end_run_quietly(run, status, ended)  # the background queue failed before it: try once directly

    with ended_as(end):
        yield run


@contextmanager
def active_child_run(
    role: str, experiment_id: str, parent_run_id: str, run_name: str, tags: dict[str, str]
) -> Iterator[str]:
    """A child run opened as this thread's active run (MLflow's fluent ``start_run``; its calls sent at once): code
    inside logs into it with MLflow's fluent API (``mlflow.active_run()``, ``mlflow.log_metric``,
    ``mlflow.sklearn.log_model``). On the way out, runs that code left open above it are ended first; it ends
    FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM. Yields the run's id."""
    tags = _child_tags(role, parent_run_id, run_name, tags)
    above = mlflow.active_run()
    with _env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"):
        if above is None or above.info.run_id == parent_run_id:  # MLflow names the same parent: one create_run
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=True, tags=tags)
        else:  # another run is active here: made apart, then reopened (two get_runs and an update more)
            created = MlflowClient().create_run(experiment_id, run_name=run_name, tags=tags)
            run = mlflow.start_run(run_id=created.info.run_id, nested=True)
    run_id = run.info.run_id

    def end(status: str) -> None:
        with _env("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"):
            while (active := mlflow.active_run()) is not None and active.info.run_id != run_id:
                mlflow.end_run()  # a run the code inside started and left open
            if active is not None:
                mlflow.end_run(status)
            else:  # the code inside ended it itself
                end_run_quietly(run_id, status)

    with ended_as(end):
        yield run_id


def _child_tags(role: str, parent_run_id: str, run_name: str, tags: dict[str, str]) -> dict[str, str]:
    return {
        ROLE_TAG: role,
        names.VERSION: version(),
        names.PARENT_RUN_ID: parent_run_id,
        names.RUN_NAME: run_name,
        **creation_tag(),
        **tags,
    }
