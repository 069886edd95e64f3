"""One small registered classifier, trained once per test module, and fresh models holding copies of it: a
promotion of one copy over another passes the default gate (a tie is "not worse")."""

import uuid

import mlflow
from test_registry import items_csv

from hyperflow.config import build_config
from hyperflow.workflows.train import train


def register_tiny(folder) -> str:
    """The name of a new registered model whose version 1 is a classifier of ``items_csv``'s ``kind``."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment("tiny-models")
    train(
        build_config(
            {
                "data": items_csv(folder / "items.csv"),
                "target": "kind",
                "width": "8",
                "epochs": "2",
                "progress": "false",
                "model_name": name,
            }
        )
    )
    return name


def copies(base: str, count: int, champion: bool = True) -> tuple[str, list[str]]:
    """A fresh model with ``count`` copies of ``base``'s version 1 (run ids kept); the first is its champion."""
    client = mlflow.MlflowClient()
    name = f"m-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    versions = [str(client.copy_model_version(f"models:/{base}/1", name).version) for _ in range(count)]
    if champion:
        client.set_registered_model_alias(name, "champion", versions[0])
    return name, versions
