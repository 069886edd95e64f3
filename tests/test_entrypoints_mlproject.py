"""Every MLproject parameter of every entry point reaches its config with the value the user passed.

The command line is built by MLflow's own project code (the template, the types, the quoting that
`mlflow run -P key=value` uses), split as the shell splits it, and run through the step script's command
and `hyperflow.cli.parse` — the function `main` runs before any workflow. Nothing is trained.
"""

import runpy
import shlex
from pathlib import Path

import pytest
from mlflow.projects._project_spec import load_project

from hyperflow.cli.parsing import CONFIGS, Invocation, parse
from hyperflow.config import PromoteConfig, RetrainConfig, TrainConfig, coerce, field_defaults
from hyperflow.config.search import SearchConfig

ROOT = Path(__file__).resolve().parents[1]
PROJECT = load_project(str(ROOT))

# A valid value other than the default for every parameter (config: a file, checked separately).
VALUES = {
    "train": {
        "data": "wine",
        "target": "label",
        "task": "regression",
        "model": "cnn",
        "loss": "mse",
        "optimizer": "sgd",
        "lr": "0.01",
        "schedule": "cosine",
        "epochs": "7",
        "batch_size": "32",
        "weight_decay": "0.01",
        "seed": "7",
        "model_name": "my-model",
    },
    "lr_find": {
        "data": "wine",
        "target": "label",
        "model": "cnn",
        "optimizer": "sgd",
        "loss": "mse",
        "batch_size": "32",
        "start_lr": "1e-6",
        "end_lr": "2.0",
        "num_iter": "50",
        "suggestion": "valley",
        "repeats": "2",
        "seed": "7",
    },
    "search": {
        "data": "wine",
        "target": "label",
        "objective": "my_pkg.objectives:train",
        "space": "my_space.yaml",
        "strategy": "random",
        "max_evals": "12",
        "budget": "500",
        "timeout": "60",
        "pruner": "asha",
        "lr_bounds": "auto",
        "resume": "0123abcd",
        "seed": "7",
        "model_name": "my-model",
        "backend": "spark",
        "parallelism": "3",
        "spark_master": "local[3]",
    },
    "main": {"data": "wine", "target": "label", "max_evals": "12", "seed": "7", "model_name": "my-model"},
    "promote": {
        "model_name": "other-model",
        "version": "3",
        "data": "wine",
        "target": "label",
        "gate": "{accuracy: {threshold: 0.5}}",
        "allow_first": "true",
        "dry_run": "true",
    },
    "retrain": {
        "model_name": "other-model",
        "data": "incoming/",
        "target": "label",
        "mode": "search",
        "max_evals": "30",
        "force": "true",
        "gate": "{accuracy: {threshold: 0.5}}",
        "allow_first": "true",
        "lease": "120",
    },
}
REQUIRED = {"promote": {"model_name": "m"}, "retrain": {"model_name": "m"}}
CONFIG_FILE = {"patience": 4, "early_stop": 3}  # a training setting no entry point declares; a search one


def invoke(entry: str, params: dict[str, str]) -> tuple[str, Invocation]:
    """What `mlflow run . -e <entry> -P k=v ...` hands the step, through the step's own command."""
    point = PROJECT.get_entry_point(entry)
    argv = shlex.split(point.compute_command({**REQUIRED.get(entry, {}), **params}, None))
    assert argv[0] == "python" and argv[1].startswith("steps/")
    command = runpy.run_path(str(ROOT / argv[1]), run_name="step")["COMMAND"]  # defines; runs nothing
    return command, parse([command, *argv[2:]], from_mlproject=True)


def received(invocation: Invocation, command: str, key: str):
    cls = next(c for c in CONFIGS[command] if key in c.__dataclass_fields__)
    config = {
        TrainConfig: invocation.train,
        SearchConfig: invocation.search,
        PromoteConfig: invocation.promote,
        RetrainConfig: invocation.retrain,
    }[cls]
    return cls, getattr(config, key)


def test_every_parameter_has_a_test_value():
    for entry, point in PROJECT._entry_points.items():
        assert set(point.parameters) - {"config"} == set(VALUES[entry]), entry


CASES = [(entry, key) for entry, values in VALUES.items() for key in values]


@pytest.mark.parametrize("entry, key", CASES, ids=[f"{e}-{k}" for e, k in CASES])
def test_the_value_passed_is_the_value_used(entry, key):
    value = VALUES[entry][key]
    command, invocation = invoke(entry, {key: value})
    cls, got = received(invocation, command, key)
    expected = coerce(key, value, cls)
    assert got == expected != field_defaults(cls)[key], (entry, key, got)


@pytest.mark.parametrize("entry", sorted(VALUES))
def test_defaults_give_the_configs_defaults(entry):
    _command, invocation = invoke(entry, {})
    expected = {
        "train": TrainConfig(),
        "search": SearchConfig(),
        "promote": PromoteConfig(**REQUIRED.get("promote", {})),
        "retrain": RetrainConfig(**REQUIRED.get("retrain", {})),
    }
    for name in ("train", "search", "promote", "retrain"):
        if getattr(invocation, name) is not None:
            assert getattr(invocation, name) == expected[name], (entry, name)
    assert invocation.overrides == {}


@pytest.mark.parametrize("entry", [e for e, p in PROJECT._entry_points.items() if "config" in p.parameters])
def test_a_config_file_sets_what_the_parameters_leave_at_their_defaults(entry, tmp_path):
    path = tmp_path / "settings.yaml"
    command = runpy.run_path(str(ROOT / PROJECT.get_entry_point(entry).command.split()[1]), run_name="step")["COMMAND"]
    settings = {k: v for k, v in CONFIG_FILE.items() if any(k in c.__dataclass_fields__ for c in CONFIGS[command])}
    path.write_text("".join(f"{k}: {v}\n" for k, v in {**settings, "epochs": 9}.items()))
    _, invocation = invoke(entry, {"config": str(path)})
    for key, value in {**settings, "epochs": 9}.items():
        assert received(invocation, command, key)[1] == value, (entry, key)
    _, invocation = invoke(entry, {"config": str(path), "seed": "5"})  # a given parameter wins over the file
    assert invocation.train.seed == 5 and invocation.train.epochs == 9
