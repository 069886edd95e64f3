import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from hyperflow.config import PRESETS, PromoteConfig, RetrainConfig, TrainConfig, build_config
from hyperflow.config.search import SearchConfig
from hyperflow.errors import UsageError


def test_defaults_follow_the_issue():
    c = build_config()
    assert (c.data, c.model, c.optimizer, c.schedule) == ("digits", "mlp", "adam", "onecycle")
    assert 20 <= c.epochs <= 40


def test_precedence_defaults_preset_file_overrides(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: sgd_onecycle\nepochs: 12\nlr: 0.05\n")
    c = build_config({"lr": "0.2"}, path)
    assert c.optimizer == "sgd" and c.momentum == 0.9 and c.nesterov  # from the preset
    assert c.epochs == 12  # from the file
    assert c.lr == 0.2  # the command line wins


def test_strings_are_coerced_to_field_types():
    c = build_config(
        {
            "epochs": "5",
            "lr": "1e-3",
            "batch_norm": "yes",
            "target": "",
            "model_kwargs": "{a: 1}",
            "model": "my_models:tiny",
        }
    )
    assert c.epochs == 5 and c.lr == 1e-3 and c.batch_norm is True and c.target is None
    assert c.model_kwargs == {"a": 1}


def test_every_preset_is_valid():
    for name in PRESETS:
        assert build_config({"preset": name}).preset == name


def test_params_are_flat_strings():
    params = build_config({"model": "my_models:tiny", "model_kwargs": {"k": 3}}).to_params()
    assert params["lr"] == "0.003" and params["model_kwargs.k"] == "3" and "target" not in params


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"lr": "0"}, "lr must be positive"),
        ({"lr": "-1"}, "lr must be positive"),
        ({"epochs": "0"}, "epochs must be positive"),
        ({"batch_size": "-5"}, "batch_size must be positive"),
        ({"epochs": "2.5"}, "expected a whole number"),
        ({"lr": "fast"}, "expected a number"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"optimizer": "adamm"}, "did you mean 'adam'"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"epoch": "3"}, "did you mean 'epochs'"),
        ({"preset": "lion"}, "unknown preset"),
        ({"optimizer": "rprop", "weight_decay": "0.1"}, "rprop does not support weight_decay"),
        ({"optimizer": "rprop", "schedule": "onecycle"}, "use schedule=constant"),
        ({"schedule": "cyclic", "base_lr": "0.1", "max_lr": "0.01"}, "base_lr < max_lr"),
        ({"nesterov": "true", "optimizer": "adam"}, "nesterov=true needs optimizer=sgd"),
        ({"warmup_epochs": "2", "schedule": "onecycle"}, "warmup_epochs applies"),
        ({"val_size": "0.6", "test_size": "0.5"}, "leave rows for training"),
        ({"dropout": "1.5"}, "dropout must be in"),
    ],
)
def test_bad_settings_are_refused_with_a_fix(overrides, fragment):
    with pytest.raises(UsageError, match=fragment):
        build_config(overrides)


def test_config_file_errors(tmp_path: Path):
    with pytest.raises(UsageError, match="not found"):
        build_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        build_config(config_file=bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text")
    with pytest.raises(UsageError, match="must be a mapping"):
        build_config(config_file=scalar)


def test_config_is_frozen_and_replace_validates():
    c = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'lr'"):
        c.lr = 1.0  # type: ignore[misc]
    assert c.lr == TrainConfig().lr
    assert c.replace(epochs=3).epochs == 3
    with pytest.raises(UsageError):
        c.replace(epochs=0)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: TrainConfig(lr=-1), "lr must be positive"),
        (lambda: TrainConfig(optimizer="lion"), "unknown optimizer 'lion'"),
        (lambda: TrainConfig(width=10**10), "width must be at most"),
        (lambda: TrainConfig(seed=2**32), "seed must be a whole number from 0 to 4294967295"),
        (lambda: TrainConfig(epochs="ten"), "expected a whole number"),
        (lambda: dataclasses.replace(TrainConfig(), batch_size=0), "batch_size must be positive"),
        (lambda: SearchConfig(strategy="cmaes"), "unknown strategy 'cmaes'"),
        (lambda: SearchConfig(max_evals=0), "max_evals must be at least 1"),
        (lambda: SearchConfig(max_evals=10**12), "max_evals must be at most 1000000"),
        (lambda: dataclasses.replace(SearchConfig(), backend="spark", strategy="grid"), "backend=spark runs random"),
        (lambda: PromoteConfig(), "model_name is required"),
        (lambda: PromoteConfig(model_name="m", max_attempts=0), "max_attempts must be from 1 to 100"),
        (lambda: RetrainConfig(model_name="m", mode="grid"), "unknown mode 'grid'"),
        (lambda: RetrainConfig(model_name="m", lease=1), "lease must be from 10 seconds"),
    ],
)
def test_every_config_validates_itself_on_every_path(make, fragment):
    """Python API, dataclasses.replace, CLI and MLproject all construct the dataclass: none can skip this."""
    with pytest.raises(UsageError, match=re.escape(fragment)) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_configs_coerce_what_they_are_given():
    c = TrainConfig(epochs="5", lr=np.float64(0.01), width=np.int64(32), batch_norm="yes", target=2020)
    assert (c.epochs, c.lr, c.width, c.batch_norm, c.target) == (5, 0.01, 32, True, "2020")
    assert type(c.lr) is float and type(c.width) is int
    assert SearchConfig(max_evals="12").max_evals == 12
    assert PromoteConfig(model_name="m", allow_first="true").allow_first is True
    assert RetrainConfig(model_name="m", max_evals="30").max_evals == 30


MODEL_NAMES = [
    "churn",
    "hyperflow-digits",
    "a b",
    "v1.2",
    "x_y",
    "é-model",
    "a/b",
    "a:b",
    "/abs",
    "../up",
    "./here",
    "a//b",
    "a/./b",
    ".",
    "..",
    "name.",
    "trailing/",
    " ",
    "m" * 256,
]  # empty: test_an_empty_value_...


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_names_are_refused_when_read_exactly_as_mlflow_would_refuse_them(name):
    """Checked with the settings (before any training); the rule is MLflow's, held to MLflow's own check."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
        mlflow_refuses = False
    except MlflowException:
        mlflow_refuses = True
    for make in (
        lambda: TrainConfig(model_name=name),
        lambda: SearchConfig(model_name=name),
        lambda: PromoteConfig(model_name=name),
        lambda: RetrainConfig(model_name=name),
    ):
        if mlflow_refuses:
            with pytest.raises(UsageError, match="model_name"):
                make()
        else:
            make()


def _config_classes() -> list[type]:
    """Every config of hyperflow.config (a frozen dataclass that validates itself), found, not listed."""
    import hyperflow.config as package
    from hyperflow.config import jobs, search, train

    found = {
        obj
        for module in (package, jobs, search, train)
        for obj in vars(module).values()
        if dataclasses.is_dataclass(obj) and isinstance(obj, type) and obj.__name__.endswith("Config")
    }
    return sorted(found, key=lambda c: c.__name__)


def _float_fields() -> list[tuple[type, str]]:
    import typing

    pairs = []
    for cls in _config_classes():
        for name, hint in typing.get_type_hints(cls).items():
            if float in getattr(hint, "__args__", (hint,)):
                pairs.append((cls, name))
    return pairs


def test_the_float_fields_are_found():
    names = {f"{cls.__name__}.{name}" for cls, name in _float_fields()}
    assert {
        "TrainConfig.weight_decay",
        "TrainConfig.grad_clip",
        "TrainConfig.flush_secs",
        "TrainConfig.lr",
        "SearchConfig.timeout",
        "RetrainConfig.lease",
    } <= names
    assert {c.__name__ for c in _config_classes()} >= {"TrainConfig", "SearchConfig", "PromoteConfig", "RetrainConfig"}


@pytest.mark.parametrize("value", ["nan", "NaN", float("nan"), "inf", "-inf", float("inf"), "1e999"])
@pytest.mark.parametrize("cls, key", _float_fields(), ids=lambda x: getattr(x, "__name__", x))
def test_every_float_setting_refuses_nan_and_inf(cls: type, key: str, value):
    needed = {"model_name": "m"} if cls.__name__ in ("PromoteConfig", "RetrainConfig") else {}
    with pytest.raises(UsageError, match=rf"^{key}=.* is not valid: expected a finite number"):
        cls(**needed, **{key: value})


@pytest.mark.parametrize("setting", ["weight_decay", "grad_clip", "flush_secs", "min_delta", "min_lr", "cycle_gamma"])
def test_nan_settings_are_one_line_exit_2(setting: str, capsys):
    from hyperflow.cli import main

    assert main(["train", f"{setting}=nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"hyperflow: error: {setting}='nan' is not valid: expected a finite number (nan and inf mean nothing here)"
    ], err


def _binary(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 8)
    return path


def test_every_yaml_reader_refuses_a_binary_file_in_one_line(tmp_path: Path):
    from hyperflow.engine.space import load_space
    from hyperflow.workflows.gate import build_gate

    readers = {
        "config file": lambda p: build_config(config_file=p),
        "space file": load_space,
        "gate file": lambda p: build_gate(str(p), "classification"),
    }
    for what, read in readers.items():
        path = _binary(tmp_path / f"{what.split()[0]}.yaml")
        with pytest.raises(UsageError, match=rf"^{what} '.*' is not UTF-8 text \(byte 128 cannot be read\)"):
            read(path)


def test_a_binary_config_file_is_one_line_exit_2(tmp_path: Path, capsys):
    from hyperflow.cli import main

    assert main(["train", f"config={_binary(tmp_path / 'c.yaml')}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not UTF-8 text" in err, err


def _naming_fields() -> list[tuple[type, str]]:
    return [
        (cls, name)
        for cls in _config_classes()
        for name, info in cls.__pydantic_fields__.items()
        if (info.json_schema_extra or {}).get("names")
    ]


def test_the_settings_that_name_something_are_found():
    names = {f"{cls.__name__}.{name}" for cls, name in _naming_fields()}
    assert {
        "SearchConfig.resume",
        "SearchConfig.space",
        "TrainConfig.experiment",
        "TrainConfig.split_column",
        "PromoteConfig.version",
        "RetrainConfig.data",
        "RetrainConfig.experiment",
        "PredictConfig.out",
    } <= names


@pytest.mark.parametrize("value", ["", "  ", "''", '""'])
@pytest.mark.parametrize("cls, key", _naming_fields(), ids=lambda x: getattr(x, "__name__", x))
def test_an_empty_value_for_a_setting_that_names_something_is_refused(cls: type, key: str, value: str):
    required = cls.__name__ in ("PromoteConfig", "RetrainConfig")  # their model_name is required
    needed = {"model_name": "m"} if required and key != "model_name" else {}
    if cls.__name__ == "PredictConfig":  # model= and data= are required
        needed = {"model": "m", "data": "d"}
    with pytest.raises(UsageError, match=rf"^{key} is empty: pass .*, or leave {key}= out"):
        cls(**needed, **{key: value})
    if not (required and key == "model_name"):
        assert getattr(cls(**needed, **{key: "none"}), key) is None  # an explicit none still means unset


def test_strategy_bayes_is_refused_as_any_unknown_choice(capsys):
    """strategy=bayes (removed: measured behind tpe, docs/benchmarks.md) is one line, exit 2."""
    from hyperflow.cli import main

    assert main(["search", "strategy=bayes", "max_evals=1"]) == 2
    err = capsys.readouterr().err.strip()
    expected = "hyperflow: error: unknown strategy 'bayes': choose one of tpe, random, grid, bohb"
    assert err.splitlines() == [expected], err


def test_an_empty_resume_is_one_line_but_mlprojects_empty_default_is_unset(capsys):
    from hyperflow.cli import main
    from hyperflow.cli.parsing import parse

    assert main(["search", "resume=", "max_evals=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "hyperflow: error: resume is empty: pass the run id of a search, or leave resume= out"
    ], err
    assert main(["train", "experiment="]) == 2 and "experiment is empty" in capsys.readouterr().err
    inv = parse(["search", "resume=", "space=", "model_name=", "spark_master="], from_mlproject=True)
    assert (inv.search.resume, inv.search.space, inv.search.model_name) == (None, None, None)


@pytest.mark.parametrize("model", ["mlp", "cnn", "unet"])
def test_model_kwargs_for_a_built_in_model_are_refused_naming_its_settings(model: str):
    from hyperflow.config.train_rules import MODEL_SETTINGS

    task = {"task": "segmentation"} if model == "unet" else {}
    with pytest.raises(
        UsageError,
        match=rf"^model_kwargs \(hidden\) go to a package.module:function model only; "
        rf"model={model} takes {', '.join(MODEL_SETTINGS[model])} as settings",
    ):
        build_config({"model": model, "model_kwargs": "{hidden: 5}", **task})


def test_the_settings_of_each_built_in_model_are_its_factorys_parameters():
    import inspect

    from hyperflow.config.train_rules import MODEL_SETTINGS
    from hyperflow.core import models

    for name, settings in MODEL_SETTINGS.items():
        parameters = set(inspect.signature(getattr(models, name)).parameters)
        assert set(settings) <= parameters & set(TrainConfig.__dataclass_fields__), name


def test_a_model_name_longer_than_mlflows_column_is_refused_with_the_settings():
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel

    column = SqlRegisteredModel.__table__.columns["name"].type.length
    for make in (TrainConfig, SearchConfig, PromoteConfig, RetrainConfig):
        assert make(model_name="m" * column).model_name == "m" * column
        with pytest.raises(UsageError, match=rf"^model_name is {column + 1} characters long: .* at most {column}"):
            make(model_name="m" * (column + 1))
