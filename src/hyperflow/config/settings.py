"""``Settings``, the frozen pydantic dataclass every config is: its fields take the command line's words and its
errors are one line (:mod:`hyperflow.config.messages`); ``coerce`` types one value as its field would."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from hyperflow.config.fields import SETTINGS_CONFIG, command_of, fields_of, from_command_line, unknown_setting
from hyperflow.config.messages import field_error, usage_error


@dataclass(frozen=True, config=SETTINGS_CONFIG)
class Settings:
    """A command's settings: typed, ranged and checked on construction (every path: the command line, YAML,
    MLproject, Python, ``dataclasses.replace``); a bad value is a :class:`UsageError` of one line."""

    @field_validator("*", mode="before")
    @classmethod
    def _words(cls, value: Any, info: Any) -> Any:
        return from_command_line(cls, info.field_name, value)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, values: Any, handler: Any) -> Any:
        try:
            return handler(values)
        except ValidationError as exc:
            raise usage_error(cls, exc) from None


@functools.cache
def _adapter(cls: type, key: str) -> TypeAdapter:
    return TypeAdapter(fields_of(cls)[key].annotation, config=SETTINGS_CONFIG)


def coerce(key: str, value: Any, cls: type) -> Any:
    """A raw value (a command-line string, a YAML scalar) typed as field ``key`` of ``cls`` would type it."""
    if key not in fields_of(cls):
        raise unknown_setting(key, fields_of(cls), command_of(cls))
    try:
        return _adapter(cls, key).validate_python(from_command_line(cls, key, value))
    except (ValidationError, PydanticCustomError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else [{"type": exc.type, "ctx": exc.context}]
        raise field_error(cls, key, value, errors) from None


@functools.cache
def _bool() -> TypeAdapter:
    return TypeAdapter(bool)


def parse_bool(value: Any) -> bool:
    """true/false (also 1/0, yes/no, on/off, any case) as every bool setting reads it; ValueError otherwise."""
    return _bool().validate_python(value.strip() if isinstance(value, str) else value)
