"""For tests/test_cold_start.py: make the sqlite store of argv[1] if missing, once stdin says go, then create
experiment argv[2] in it (three of these released together must never see a store half made)."""

import sys

import mlflow

from hyperflow.tracking import new_store

print("ready", flush=True)
sys.stdin.readline()  # every process starts at once
new_store.make_if_missing(sys.argv[1])
mlflow.MlflowClient(sys.argv[1]).create_experiment(sys.argv[2])
