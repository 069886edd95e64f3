"""Spark's Python daemon with hyperflow's imports done once (``spark.python.daemon.module``).

hyperopt's SparkTrials runs each trial as a one-task Spark job whose Python worker is not reused (its
task leaves the input iterator unread), so every trial gets a fresh worker forked from this daemon.
Importing torch, hyperopt and (through hyperflow's objective) MLflow here, before the fork, spares each
trial those seconds of imports.
"""

import hyperopt  # noqa: F401
import torch  # noqa: F401
from pyspark.daemon import manager

import hyperflow.workflows.search_trial  # noqa: F401

if __name__ == "__main__":
    manager()
