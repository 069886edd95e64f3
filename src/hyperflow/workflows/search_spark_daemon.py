"""Spark's Python daemon with hyperflow's imports done once (``spark.python.daemon.module``).

hyperopt's SparkTrials runs each trial as a one-task Spark job whose Python worker is not reused (its
task leaves the input iterator unread), so every trial gets a fresh worker forked from this daemon.
Importing torch, hyperopt and (through hyperflow's objective) MLflow here, before the fork, spares each
trial those seconds of imports; so do what a trial imports when it runs (``hyperflow.runtime.processes.
TRIAL_IMPORTS``, the fork server's too): torch's compiler (a torch optimizer imports it when the first one is
made), MLflow's database store, the model logging. Measured, tests/test_spark*.py (10 tests, 22-27 Python
workers): the workers' CPU 94 s with the first three only, 29 s with all.
"""

import importlib

import hyperopt  # noqa: F401
from pyspark.daemon import manager

from hyperflow.runtime.processes import TRIAL_IMPORTS

for name in TRIAL_IMPORTS:
    importlib.import_module(name)

if __name__ == "__main__":
    manager()
