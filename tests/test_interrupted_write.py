"""Ctrl-C in the middle of a database write: the run still ends KILLED, at once.

An interrupt inside MLflow's sqlite write (e.g. the best trial's test metrics) leaves the statement's cursor in
the frames of the traceback, and sqlite keeps its write lock while the statement lives: ending the run then
waited out the 20 s busy timeout, failed, and left the run RUNNING. Here a real write transaction on the
store is open in the interrupted frame, as it was in that case."""

import mlflow
import pytest
from mlflow.tracking._tracking_service.utils import _get_store

from hyperflow.tracking import tracked_run


def _write_then_interrupt(run_id: str) -> None:
    connection = _get_store().engine.raw_connection()  # a connection of the store's own pool
    cursor = connection.cursor()
    cursor.execute("UPDATE runs SET name = name WHERE run_uuid = ?", (run_id,))  # holds sqlite's write lock
    raise KeyboardInterrupt  # Ctrl-C before the write was committed or rolled back


def test_a_run_interrupted_inside_a_database_write_ends_killed_without_waiting(experiment, client):
    with pytest.raises(KeyboardInterrupt):
        with tracked_run("train", experiment=experiment) as run:
            _write_then_interrupt(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None
