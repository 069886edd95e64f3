"""The facts of a config's fields that parsing, messages and help read (type, choices, None, auto, default,
what a setting names), and the command line's words for a value (``none``, ``auto``, ``1e3``, ``{a: 1}``)."""

from __future__ import annotations

import functools
import posixpath
import types
import typing
from typing import Any, Literal

from pydantic import ConfigDict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from hyperflow.errors import UsageError

MAX_MODEL_NAME = 256  # MLflow's registered_models.name column, String(256), in its SQL stores
EMPTY_WORDS = {"", "''", '""'}  # an empty value given; for a setting that names something (names=...), refused
NONE_WORDS = {*EMPTY_WORDS, "none", "null"}
Auto = Literal["auto"]  # lr=auto, parallelism=auto: found at run time

# pydantic's lax mode reads '5', 'yes', 5.0 and numpy numbers; numbers given to a text setting become text
# (target=2020), and nan/inf are refused for every float setting (they mean nothing here).
SETTINGS_CONFIG = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False, defer_build=True)


class Shape(typing.NamedTuple):
    """What a field's annotation allows: its base type, None, ``auto``, and its choices (a Literal)."""

    base: type
    optional: bool
    auto: bool
    choices: tuple[str, ...]


def shape_of(annotation: Any) -> Shape:
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    members = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args or [annotation]]
    literals = tuple(v for m in members if typing.get_origin(m) is Literal for v in typing.get_args(m))
    bases = [m for m in members if m is not type(None) and typing.get_origin(m) is not Literal]
    if not bases:  # a choice: its words
        return Shape(str, type(None) in members, False, literals)
    base = typing.get_origin(bases[0]) or bases[0]
    return Shape(base, type(None) in members, "auto" in literals, tuple(v for v in literals if v != "auto"))


@functools.cache
def field_shape(cls: type, key: str) -> Shape:
    return shape_of(fields_of(cls)[key].annotation)


COMMANDS = {
    "TrainConfig": "train",
    "SearchConfig": "search",
    "PromoteConfig": "promote",
    "RetrainConfig": "retrain",
    "PredictConfig": "predict",
}


def command_of(cls: type) -> str:
    """The command whose --help lists the settings of ``cls``."""
    return COMMANDS.get(cls.__name__, "train")


def fields_of(cls: type) -> dict[str, FieldInfo]:
    return cls.__pydantic_fields__


def default_of(info: FieldInfo) -> Any:
    return info.get_default(call_default_factory=True)


def field_defaults(cls: type) -> dict[str, Any]:
    """Every field's default, without constructing ``cls`` (some configs need a value, e.g. model_name)."""
    return {name: default_of(info) for name, info in fields_of(cls).items()}


def extra(info: FieldInfo, name: str) -> Any:
    return (info.json_schema_extra or {}).get(name)  # type: ignore[union-attr]


def _whole_number(text: str) -> Any:
    """'1e3' and '5.0' as the whole numbers they write (pydantic reads '5' only); other text as it is."""
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else text


def from_command_line(cls: type, key: str, value: Any) -> Any:
    """The command line's words for a field's value: none/null/'' for an optional setting (refused empty for
    one that names something), auto in any case, whole numbers written as floats, YAML mappings, numpy."""
    shape = field_shape(cls, key)
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    if not isinstance(value, str):
        return value
    word = value.strip()
    if shape.auto and word.lower() == "auto":
        return "auto"
    if shape.optional and word.lower() in NONE_WORDS:
        names = extra(fields_of(cls)[key], "names")
        if names and word in EMPTY_WORDS:  # resume=$ID with ID unset must not mean "no resume"
            raise PydanticCustomError("empty", "{names}", {"names": names})
        return None
    if shape.base is int:
        return _whole_number(word)
    if shape.base is dict:
        import yaml  # only for a mapping given as text: PyYAML's import is not paid by every command

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def unknown_setting(key: str, known: Any, command: str = "train") -> UsageError:
    """The error for a setting no config of ``command`` has, suggesting the closest one of THAT command."""
    import difflib  # only to refuse: not paid by a command that runs

    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"see 'hyperflow {command} --help' for the settings"
    return UsageError(f"unknown setting '{key}': {hint}")


def unknown_choice(key: str, value: Any, allowed: typing.Sequence[str]) -> UsageError:
    import difflib

    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UsageError(f"unknown {key} '{value}'{hint}: choose one of {', '.join(allowed)}")


def check_model_name(value: str | None) -> str | None:
    """MLflow's rule for registered model names (``mlflow.utils.validation._validate_model_name``), checked
    when the settings are read: MLflow applies it only when the model is registered, after the training or
    the search. Written out because config must not import MLflow; tests/test_config.py holds it to
    MLflow's own check."""
    if value is None:
        return value
    if not value.strip():
        raise UsageError("model_name is empty: give the registered model a name, e.g. model_name=churn")
    if len(value) > MAX_MODEL_NAME:
        raise UsageError(
            f"model_name is {len(value)} characters long: a registered model name has at most "
            f"{MAX_MODEL_NAME} (MLflow's SQL stores), pick a shorter one"
        )
    if "/" in value or ":" in value:
        raise UsageError(
            f"model_name '{value}' cannot be a registered model name: it must not contain '/' or "
            f"':' (e.g. model_name={value.replace('/', '-').replace(':', '-')})"
        )
    norm = posixpath.normpath(value)
    if norm != value or norm == "." or norm.startswith(".."):
        raise UsageError(
            f"model_name '{value}' cannot be a registered model name: MLflow may store it as a "
            f"path, and it would resolve to '{norm}'; pick a plain name"
        )
    return value
