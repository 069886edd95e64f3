"""The MLflow Project itself: environment files in step, MLproject defaults, `mlflow run` end to end."""

import importlib.metadata
import os
import runpy
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from hyperflow.cli.parsing import CONFIGS, command_name, drop_defaults
from hyperflow.config import coerce, field_defaults

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements):
    return sorted(r.replace(" ", "") for r in requirements)


def test_conda_yaml_lists_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())["dependencies"]
    pip_deps = next(d["pip"] for d in conda if isinstance(d, dict))
    assert _names(pip_deps) == _names(pyproject)


# libraries whose internals the code uses (pyproject.toml's comment lists them): capped at a release not tested
RELIED_ON = ("hyperopt", "torch", "mlflow", "pyspark")


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r)
        for r in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    ]


def test_installed_libraries_fall_in_the_declared_ranges():
    """The ranges pyproject.toml declares are the ones tested: every declared library installed here (the
    suite's environment) is inside its range; each library whose internals the code uses has an upper bound,
    and hyperopt's range holds the version whose trial records hyperflow writes."""
    from hyperflow.engine.hyperopt_records import PINNED_VERSION

    requirements = declared_requirements()
    for requirement in requirements:
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra not installed here (bench's)
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement.name} {installed} is outside the declared {requirement}"
        )
    for name in RELIED_ON:
        ranges = [r.specifier for r in requirements if r.name == name]
        assert ranges and all(any(s.operator == "<" for s in spec) for spec in ranges), f"{name}: {ranges}"
    (hyperopt,) = (r.specifier for r in requirements if r.name == "hyperopt")
    assert hyperopt.contains(PINNED_VERSION)


def step_command(entry: dict) -> str:
    """The hyperflow command an entry point's step script runs (its COMMAND)."""
    script = ROOT / entry["command"].split()[1]
    return runpy.run_path(str(script), run_name="step")["COMMAND"]  # not __main__: defines, runs nothing


def test_every_mlproject_parameter_has_its_configs_default():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    for name, entry in project["entry_points"].items():
        command = command_name(step_command(entry))
        assert command is not None, name
        for key, spec in entry["parameters"].items():
            assert f"{key}={{{key}}}" in entry["command"], (name, key)
            if key == "config":
                assert spec["default"] == "", name  # no file unless given
                continue
            cls = next((c for c in CONFIGS[command] if key in c.__dataclass_fields__), None)
            assert cls is not None, f"{name}: parameter {key} is no setting of hyperflow {command}"
            if spec["default"] == "":  # dropped as unset (an empty value given by hand may be refused)
                assert field_defaults(cls)[key] is None, (name, key)
                assert drop_defaults(command, {key: ""}) == {}, (name, key)
                continue
            assert coerce(key, str(spec["default"]), cls) == field_defaults(cls)[key], (name, key)


def test_values_equal_to_the_entry_points_own_defaults_defer_to_the_config_file():
    kept = drop_defaults(
        "search",
        {
            "epochs": "30",
            "lr": "0.003",
            "target": "",
            "config": "",
            "seed": "7",
            "max_evals": "30",
            "strategy": "random",
        },
    )
    assert kept == {"seed": "7", "strategy": "random"}
    # retrain's max_evals default is 10, not search's 30: 30 is a value the user gave
    assert drop_defaults("retrain", {"max_evals": "30", "mode": "champion", "lease": "600"}) == {"max_evals": "30"}
    assert drop_defaults("retrain", {"max_evals": "10"}) == {}
    assert drop_defaults("promote", {"dry_run": "false", "allow_first": "true", "version": ""}) == {
        "allow_first": "true"
    }
    # retrain's training settings override the champion's: no value of theirs means "unset"
    assert drop_defaults("retrain", {"epochs": "30"}) == {"epochs": "30"}
    assert drop_defaults("lr-find", {"num_iter": "100", "repeats": "3"}) == {"repeats": "3"}


def test_steps_stay_thin():
    for step in (ROOT / "steps").glob("*.py"):
        assert len(step.read_text().splitlines()) <= 30, step


@pytest.mark.integration
def test_mlflow_run_train_end_to_end(tmp_path, tracking_uri):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # the step's `python`
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(var, None)  # set by earlier in-process tests; the subprocess chooses its own
    (tmp_path / "settings.yaml").write_text("epochs: 3\nwidth: 64\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "train",
            "--env-manager",
            "local",
            "-P",
            f"config={tmp_path / 'settings.yaml'}",
            "-P",
            "lr=1e-3",
            "--experiment-name",
            "e2e",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
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


@pytest.mark.integration
def test_mlflow_run_search_end_to_end(tmp_path, tracking_uri):
    """The main job as users start it: the run `mlflow run` made holds the -P values, the search logs the rest
    into it, and its trials (run at once by default) nest under it."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        env.pop(var, None)
    (tmp_path / "settings.yaml").write_text("epochs: 2\nwidth: 16\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "search",
            "--env-manager",
            "local",
            "-P",
            f"config={tmp_path / 'settings.yaml'}",
            "-P",
            "max_evals=3",
            "-P",
            "model_name=e2e-search",
            "--experiment-name",
            "e2e-search",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        runs = mlflow.search_runs(experiment_names=["e2e-search"], output_format="list")
        search = next(r for r in runs if r.data.tags.get("hyperflow.role") == "search")
        trials = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]
        assert search.info.status == "FINISHED" and search.data.params["max_evals"] == "3"
        assert search.data.params["space"] == "''" and search.data.params["parallelism"] == "auto"
        assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
        assert all(t.data.tags["mlflow.parentRunId"] == search.info.run_id for t in trials)
        assert mlflow.MlflowClient().get_model_version_by_alias("e2e-search", "challenger")
    finally:
        mlflow.set_tracking_uri(tracking_uri)
