"""Spark's Python daemon with hyperflow's imports done once (``spark.python.daemon.module``).

hyperopt's SparkTrials runs each trial as a one-task Spark job whose Python worker is not reused (its
task leaves the input iterator unread), so every trial gets a fresh worker forked from this daemon.
Importing torch, hyperopt and (through hyperflow's objective) MLflow here, before the fork, spares each
trial those seconds of imports; so do what a trial imports when it runs (the fork server's preload list,
``hyperflow.runtime.processes.PRELOAD``): torch's compiler (a torch optimizer imports it when the first one is
made), MLflow's database store, the model logging. Measured, tests/test_spark*.py (10 tests, 22-27 Python
workers): the workers' CPU 94 s with the first three only, 29 s with all.
"""

import hyperopt  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import torch
import torch._dynamo  # noqa: F401
from pyspark.daemon import manager

import hyperflow.tracking.callbacks
import hyperflow.tracking.model_logging
import hyperflow.workflows.search_trial  # noqa: F401

if __name__ == "__main__":
    manager()
