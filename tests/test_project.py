"""The MLflow Project itself: environment files in step, MLproject defaults, `mlflow run` end to end."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import mlflow
import pytest
import yaml

from hyperflow.cli import drop_defaults
from hyperflow.config import TrainConfig, coerce
from hyperflow.search.settings import SEARCH_KEYS, SearchConfig
from hyperflow.workflows.promote import PromoteConfig
from hyperflow.workflows.retrain import RetrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements):
    return sorted(r.replace(" ", "") for r in requirements)


def test_conda_yaml_lists_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())["dependencies"]
    pip_deps = next(d["pip"] for d in conda if isinstance(d, dict))
    assert _names(pip_deps) == _names(pyproject)


def test_mlproject_defaults_equal_hyperflow_defaults():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    own = {"promote": PromoteConfig, "retrain": RetrainConfig}
    for name, entry in project["entry_points"].items():
        for key, spec in entry["parameters"].items():
            if key == "config":
                continue
            cls = SearchConfig if key in SEARCH_KEYS and name in ("search", "main") else TrainConfig
            cls = own[name] if key in getattr(own.get(name), "__dataclass_fields__", {}) else cls
            assert coerce(key, str(spec["default"]), cls) == getattr(cls(), key), (name, key)
            assert f"{key}={{{key}}}" in entry["command"], (name, key)


def test_mlproject_values_equal_to_defaults_defer_to_the_config_file():
    kept = drop_defaults({"epochs": "30", "lr": "0.003", "target": "", "config": "", "seed": "7",
                          "max_evals": "30", "strategy": "random"})
    assert kept == {"seed": "7", "strategy": "random"}


def test_steps_stay_thin():
    for step in (ROOT / "steps").glob("*.py"):
        assert len(step.read_text().splitlines()) <= 30, step


@pytest.mark.slow
def test_mlflow_run_train_end_to_end(tmp_path, tracking_uri):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(var, None)  # set by earlier in-process tests; the subprocess chooses its own
    (tmp_path / "settings.yaml").write_text("epochs: 3\nwidth: 64\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "train", "--env-manager", "local",
         "-P", f"config={tmp_path / 'settings.yaml'}", "-P", "lr=1e-3", "--experiment-name", "e2e"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        run = mlflow.search_runs(experiment_names=["e2e"], output_format="list")[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "30"  # what `mlflow run` logged from MLproject ...
        assert run.data.params["resolved.epochs"] == "3"  # ... and what the config file made of it
        assert run.data.params["width"] == "64" and run.data.params["lr"] == "1e-3"
        assert run.data.tags["hyperflow.role"] == "train"
        assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")) == 3
        assert run.data.metrics["test_accuracy"] > 0.5
    finally:
        mlflow.set_tracking_uri(tracking_uri)
