"""The field helper every config is declared with, and what turns raw values (command-line strings, YAML
scalars) into typed fields: coercion, help texts, defaults, YAML files and unknown-setting errors."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import posixpath
from dataclasses import field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from hyperflow.errors import UsageError


def setting(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text (shown by ``hyperflow <command> --help``). ``names="a run id"``: the
    setting names something, so an empty value given (``resume=``) is refused instead of meaning the default."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


_COMMAND_OF = {"TrainConfig": "train", "SearchConfig": "search", "PromoteConfig": "promote", "RetrainConfig": "retrain"}
_EMPTY_WORDS = {"", "''", '""'}  # an empty value given; for a setting that names something (names=...), refused
_NONE_WORDS = {*_EMPTY_WORDS, "none", "null"}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


def field_help(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for every setting, for ``--help`` and the README."""
    return [(f.name, str(default_value(f)), f.metadata["help"]) for f in fields(cls)]


def default_value(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


MAX_MODEL_NAME = 256  # MLflow's registered_models.name column, String(256), in its SQL stores
AUTO_KEYS = ("lr", "max_lr", "base_lr", "parallelism")


@functools.cache
def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(cls)}


@functools.cache
def _hints_of(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # slow (it evaluates the annotations): once per class


def unknown_setting(key: str, known: Any, command: str = "train") -> UsageError:
    """The error for a setting no config of ``command`` has, suggesting the closest one of THAT command."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"see 'hyperflow {command} --help' for the settings"
    return UsageError(f"unknown setting '{key}': {hint}")


def parse_bool(value: Any) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off, any case) or a bool; ValueError otherwise."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _TRUE_WORDS | _FALSE_WORDS:
        raise ValueError(f"not true or false: {value!r}")
    return word in _TRUE_WORDS


def coerce(key: str, value: Any, cls: type) -> Any:
    """Convert a raw value (a string from the command line, or YAML) to the field's type in ``cls``."""
    if key in AUTO_KEYS and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    known = fields_of(cls)
    if key not in known:
        raise unknown_setting(key, known, _COMMAND_OF.get(cls.__name__, "train"))
    typ = _hints_of(cls)[key]
    args = [a for a in getattr(typ, "__args__", (typ,)) if a is not type(None)]
    optional = type(None) in getattr(typ, "__args__", ())
    base = args[0].__name__
    if isinstance(value, str) and value.strip().lower() in _NONE_WORDS and optional:
        names = known[key].metadata.get("names")
        if names and value.strip() in _EMPTY_WORDS:  # resume=$ID with ID unset must not mean "no resume"
            raise UsageError(f"{key} is empty: pass {names}, or leave {key}= out")
        return None
    if value is None:
        if optional:
            return None
        raise UsageError(f"{key} needs a value (default: {default_value(known[key])})")
    try:
        if base == "bool":
            return parse_bool(value)
        if base == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if base == "float":
            number = value if type(value) is float else float(value)
            if not math.isfinite(number):
                raise UsageError(
                    f"{key}={value!r} is not valid: expected a finite number{_auto_word(key)} "
                    f"(nan and inf mean nothing here)"
                )
            return number
        if base == "dict":
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
        return value if type(value) is str else str(value)
    except (TypeError, ValueError, OverflowError):
        auto = _auto_word(key)
        kind = {
            "bool": "true or false",
            "int": f"a whole number{auto}",
            "float": f"a number{auto}",
            "dict": "a YAML mapping like {a: 1}",
        }.get(base, base)
        raise UsageError(f"{key}={value!r} is not valid: expected {kind}") from None


def _auto_word(key: str) -> str:
    return " or auto" if key in AUTO_KEYS else ""


def coerce_fields(config: Any) -> None:
    """Coerce every field of a frozen config in place (``__post_init__``): strings from the command line,
    YAML scalars and numpy numbers become the field's type, so validation sees real values."""
    for f in fields(config):
        value = getattr(config, f.name)
        coerced = coerce(f.name, value, type(config))
        if coerced is not value:
            object.__setattr__(config, f.name, coerced)


def field_defaults(cls: type) -> dict[str, Any]:
    """Every field's default, without constructing ``cls`` (some configs need a value, e.g. model_name)."""
    return {f.name: default_value(f) for f in fields(cls)}


class DuplicateKey(yaml.YAMLError):
    """A mapping that names one key twice: YAML lets the last one win without a word."""

    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"'{key}' appears twice (lines {first} and {again}): keep one")


class _UniqueKeys(yaml.SafeLoader):
    """yaml.SafeLoader, refusing a key given twice in one mapping."""


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise DuplicateKey(key, seen[key] + 1, key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: SafeLoader refuses it itself
            pass
    return loader.construct_mapping(node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice (:class:`DuplicateKey`, a ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeys)


def read_text(path: Path, what: str) -> str:
    """A YAML (or other text) file's contents: one line when its bytes are not UTF-8 text (a binary file);
    OSError passes to the caller, which knows what a missing file means."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} '{path}' is not UTF-8 text (byte {exc.start} cannot be read): pass a YAML file saved as UTF-8"
        ) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of settings; a clear error when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file '{path}' not found: pass an existing YAML file with config=PATH")
    try:
        loaded = safe_load(read_text(path, "config file")) or {}
    except OSError as exc:
        raise UsageError(f"config file '{path}' cannot be read: {exc.strerror or exc}") from None
    except DuplicateKey as exc:
        raise UsageError(f"config file '{path}': {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UsageError(f"config file '{path}' is not valid YAML{where}: fix its syntax") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"config file '{path}' must be a mapping of settings, e.g. 'epochs: 20'")
    return loaded


def check_model_name(value: str | None) -> None:
    """MLflow's rule for registered model names (``mlflow.utils.validation._validate_model_name``), checked
    when the settings are read: MLflow applies it only when the model is registered, after the training or
    the search. Written out because config must not import MLflow; tests/test_config.py holds it to
    MLflow's own check."""
    if value is None:
        return
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


def check_choice(key: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown {key} '{value}'{hint}: choose one of {', '.join(allowed)}")
