"""Trials on Apache Spark through hyperopt's SparkTrials (the optional extra ``hyperflow[spark]``).

Spark schedules, MLflow stores: each trial is a one-task Spark job that opens its own child run with an
explicit parent id, so nothing but the objective and its settings travels to the executors. The driver
hands each trial, when hyperopt dispatches it, its number and the val_loss histories of the trials
finished by then (for pruning); stop rules run on the driver in the suggestion step (never through
``early_stop_fn``, which crashes SparkTrials' dispatcher thread and hangs the search).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

import mlflow
from hyperopt import STATUS_FAIL, STATUS_OK

from hyperflow.errors import UsageError
from hyperflow.core.pruning import peer_statuses
from hyperflow.search.space import flatten

if TYPE_CHECKING:
    from hyperflow.search.runner import TrialTask

DAEMON_MODULE = "hyperflow.search.spark_daemon"
INSTALL_HINT = "pip install 'hyperflow[spark]'"
_datasets: dict[tuple, Any] = {}  # per Python worker: trials of one search share the loaded data


def check_available(session: Any = None) -> None:
    """pyspark importable, a Java runtime found and no Spark Connect, else a one-line error saying what to do."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"backend=spark needs pyspark: {INSTALL_HINT} (and Java 17)") from None
    if os.environ.get("SPARK_REMOTE") or os.environ.get("SPARK_CONNECT_MODE_ENABLED") == "1":
        raise UsageError("backend=spark cannot use Spark Connect (SPARK_REMOTE is set): hyperopt's SparkTrials "
                         "needs a classic SparkSession; unset SPARK_REMOTE and give spark_master=<master URL>")
    if session is not None and is_connect(session):
        raise UsageError("backend=spark cannot use a Spark Connect session: hyperopt's SparkTrials needs a classic "
                         "SparkSession (pyspark.sql.SparkSession with a SparkContext)")
    if session is not None:
        return
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not shutil.which("java"):
        raise UsageError("backend=spark needs Java 17: install it (e.g. apt-get install openjdk-17-jre-headless) "
                         "or set JAVA_HOME")


def is_connect(session: Any) -> bool:
    from pyspark.sql.utils import is_remote

    return is_remote() or type(session).__module__.startswith("pyspark.sql.connect")


def session_for(master: str | None, parallelism: int, session: Any = None) -> Any:
    """The SparkSession to run on: the one given, else a classic session on ``master`` (default
    ``local[parallelism]``); ``check_available`` has ruled out Spark Connect."""
    if session is None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = (SparkSession.builder.appName("hyperflow-search").master(master or f"local[{parallelism}]")
                   .config("spark.ui.enabled", "false").config("spark.python.daemon.module", DAEMON_MODULE)
                   .config("spark.task.maxFailures", "1"))
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    return session


def threads_per_trial(session: Any, parallelism: int) -> int:
    """Each trial's share of the cores: local[N] splits this machine, a cluster gives spark.task.cpus."""
    conf = session.sparkContext.getConf()
    if conf.get("spark.master", "").startswith("local"):
        return max(1, (os.cpu_count() or 1) // parallelism)
    return max(1, int(conf.get("spark.task.cpus", "1")))


def executor_environment() -> dict[str, str]:
    """What an executor needs to log: the tracking URI (a relative sqlite path made absolute) and the
    driver's MLFLOW_* settings (credentials, retries). It travels in memory, never into a run."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    env = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_") and k not in ("MLFLOW_RUN_ID",)}
    return {**env, "MLFLOW_TRACKING_URI": uri}


class SparkObjective:
    """The objective shipped to the executors. hyperopt pickles it once per trial, as it dispatches the
    trial; ``__getstate__`` then snapshots the trial's number and the histories finished so far."""

    def __init__(self, template: TrialTask, first_number: int, trials: Any) -> None:
        self.template, self.next_number, self.trials = template, first_number, trials
        self.env = executor_environment()

    def __getstate__(self) -> dict[str, Any]:
        keep = peer_statuses(self.template.pruner[0])
        done = [r["history"] for r in self.trials.results if r.get("trial_status") in keep and "history" in r]
        task = dataclasses.replace(self.template, number=self.next_number, history=self.template.history + done)
        self.next_number += 1
        return {"task": task, "env": self.env}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:  # runs on an executor
        from hyperflow.core.assembly import load_data
        from hyperflow.search.runner import run_trial_safely

        os.environ.update(self.env)
        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        task = self.task
        if task.deadline is not None and time.time() >= task.deadline:
            return {"status": STATUS_FAIL, "failure": "timeout before the trial started"}
        key = (task.base.data, task.base.target, task.base.task, task.base.seed, task.base.val_size,
               task.base.test_size, task.base.split_column)
        if key not in _datasets:
            _datasets.clear()
            _datasets[key] = load_data(task.base)
        record, _ = run_trial_safely(task, flatten(sample), _datasets[key])
        if record.status == "failed":
            return {"status": STATUS_FAIL, "failure": record.reason, "run_id": record.run_id}
        return {"status": STATUS_OK, "loss": record.loss, "history": record.history, "run_id": record.run_id,
                "trial_status": record.status}
