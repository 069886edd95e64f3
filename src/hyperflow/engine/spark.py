"""Trials on Apache Spark through hyperopt's SparkTrials (the optional extra ``hyperflow[spark]``).

Spark schedules: each trial is a one-task Spark job running the objective (hyperflow's opens its own child run
with an explicit parent id), so nothing but the objective and its settings travels to the executors. The driver
hands each trial, when hyperopt dispatches it, its number and the val_loss histories of the trials
finished by then (for pruning); stop rules run on the driver in the suggestion step (never through
``early_stop_fn``, which crashes SparkTrials' dispatcher thread and hangs the search).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from hyperflow import machine
from hyperflow.engine import hyperopt_records
from hyperflow.engine.space_hyperopt import flatten, to_hyperopt
from hyperflow.engine.trial import Trial, run_trial
from hyperflow.errors import UsageError

DAEMON_MODULE = "hyperflow.workflows.search_spark_daemon"  # the imports of hyperflow's objective, done once
INSTALL_HINT = "pip install 'hyperflow[spark]'"


def check_available(session: Any = None) -> None:
    """pyspark importable, a Java runtime found and no Spark Connect, else a one-line error saying what to do."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"backend=spark needs pyspark: {INSTALL_HINT} (and Java 17)") from None
    if os.environ.get("SPARK_REMOTE") or os.environ.get("SPARK_CONNECT_MODE_ENABLED") == "1":
        raise UsageError(
            "backend=spark cannot use Spark Connect (SPARK_REMOTE is set): hyperopt's SparkTrials "
            "needs a classic SparkSession; unset SPARK_REMOTE and give spark_master=<master URL>"
        )
    if session is not None and is_connect(session):
        raise UsageError(
            "backend=spark cannot use a Spark Connect session: hyperopt's SparkTrials needs a classic "
            "SparkSession (pyspark.sql.SparkSession with a SparkContext)"
        )
    if session is not None:
        return
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not shutil.which("java"):
        raise UsageError(
            "backend=spark needs Java 17: install it (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )


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

        builder = (
            SparkSession.builder.appName("hyperflow-search")
            .master(master or f"local[{parallelism}]")
            .config("spark.ui.enabled", "false")
            .config("spark.python.daemon.module", DAEMON_MODULE)
            .config("spark.task.maxFailures", "1")
        )
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    return session


def spark_threads_per_trial(session: Any, parallelism: int) -> int:
    """Each trial's share of the CPUs: local[N] splits those this process may use, a cluster gives
    spark.task.cpus."""
    conf = session.sparkContext.getConf()
    if conf.get("spark.master", "").startswith("local"):
        return machine.threads_per_trial(parallelism)
    return max(1, int(conf.get("spark.task.cpus", "1")))


class SparkObjective:
    """The objective shipped to the executors. hyperopt pickles it once per trial, as it dispatches the
    trial; ``__getstate__`` then snapshots the trial's number and the peers' curves finished so far."""

    def __init__(
        self, objective: Any, trial: Trial, statuses: tuple[str, ...], first_number: int, trials: Any, budget: int = 0
    ):
        """``trial``: the template of every trial (pruner, peers known now, deadline, threads); ``statuses``:
        the statuses of the trials whose curves the pruner compares with; ``budget``: units of work in all."""
        self.objective, self.template, self.statuses = objective, trial, statuses
        self.next_number, self.trials, self.budget = first_number, trials, budget

    def __getstate__(self) -> dict[str, Any]:
        done = hyperopt_records.peer_curves(self.trials.results, self.statuses)
        t = self.template
        left = max(0, self.budget - sum(r.get("units", 0) for r in self.trials.results)) if self.budget else None
        trial = Trial(self.next_number, {}, t.pruner, [*t.peers, *done], t.deadline, threads=t.threads, units_left=left)
        self.next_number += 1
        return {"objective": self.objective, "trial": trial}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:  # runs on an executor
        trial = self.trial
        if trial.deadline is not None and time.time() >= trial.deadline:
            return hyperopt_records.result(None, "timeout before the trial started")
        trial.params = flatten(sample)
        return hyperopt_records.trial_result(run_trial(self.objective, trial))


class SparkBackend:
    """Trials as one-task Spark jobs through hyperopt's SparkTrials, on the session given or one of its own."""

    def __init__(self, master: str | None, parallelism: int, session: Any, deadline: float | None) -> None:
        self.own_session = session is None
        self.session = session_for(master, parallelism, session)
        self.threads = spark_threads_per_trial(self.session, parallelism)
        self.parallelism, self.deadline = parallelism, deadline

    def new_trials(self) -> Any:
        # grace past the search's deadline: the trials stop themselves at it
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.time()) + 60
        return hyperopt_records.spark_trials(self.parallelism, remaining, self.session)

    def search(
        self,
        objective: SparkObjective,
        space: dict[str, Any],
        trials: Any,
        suggest: Callable[..., list],
        max_evals: int,
        seed: int,
        progress: Callable[..., Any] | None = None,
    ) -> bool:
        """fmin over ``space`` in ``trials`` (filled and queued by the loop), ``progress``: fmin's progress context
        (:class:`hyperopt_records.FinishedTrials`). True when SparkTrials cancelled the search at its own
        timeout."""
        try:
            hyperopt_records.minimize(
                objective, to_hyperopt(space), trials, suggest, max_evals, seed, progressbar=progress or False
            )
        except KeyboardInterrupt:
            if self.own_session:
                self.session.sparkContext.cancelAllJobs()
            raise
        return hyperopt_records.cancelled_at_timeout(trials)
