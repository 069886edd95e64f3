"""pydantic's validation errors as hyperflow's one line that names the setting, the value and the fix: a value
of the wrong type, a choice (with the nearest one), a range, a setting that names something left empty."""

from __future__ import annotations

import typing
from typing import Any

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from hyperflow.config.fields import (
    command_of,
    default_of,
    extra,
    field_shape,
    fields_of,
    unknown_choice,
    unknown_setting,
)
from hyperflow.errors import UsageError

KINDS = {bool: "true or false", int: "a whole number", float: "a number", dict: "a YAML mapping like {a: 1}"}
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
TYPE_ERRORS = ("int_", "float_", "bool_", "dict_", "string_", "finite_number", "missing")


def usage_error(cls: type, exc: ValidationError) -> UsageError:
    """The first setting pydantic refused (in the order the settings are declared), as one line."""
    errors = exc.errors()
    first = errors[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "unexpected_keyword_argument":
        return unknown_setting(key, fields_of(cls), command_of(cls))
    if key not in fields_of(cls):  # not one setting's (e.g. a positional argument too many): pydantic's words
        return UsageError(f"{cls.__name__}: {first['msg']}")
    return field_error(cls, key, first["input"], [e for e in errors if e["loc"][:1] == (key,)])


def field_error(cls: type, key: str, value: Any, errors: list[Any]) -> UsageError:
    """One line for the errors of one field (a union such as ``float | auto`` gives one per member)."""
    kinds = {e["type"]: e for e in errors}
    shape = field_shape(cls, key)
    info = fields_of(cls)[key]
    if "empty" in kinds:
        names = kinds["empty"]["ctx"]["names"]
        return UsageError(f"{key} is empty: pass {names}, or leave {key}= out")
    bound = next((kinds[t] for t in kinds if t in BOUND_ERRORS), None)
    if bound is not None:
        return UsageError(_out_of_range(cls, key, info, bound, value))
    if value is None:
        return UsageError(f"{key} needs a value (default: {default_of(info)})")
    auto = " or auto" if shape.auto else ""
    if "finite_number" in kinds and shape.base is float:
        return UsageError(
            f"{key}={value!r} is not valid: expected a finite number{auto} (nan and inf mean nothing here)"
        )
    if shape.choices and not any(t.startswith(TYPE_ERRORS) for t in kinds):
        return unknown_choice(key, value, shape.choices)
    kind = KINDS.get(shape.base, shape.base.__name__)
    return UsageError(f"{key}={value!r} is not valid: expected {kind}{auto}")


def bounds(info: FieldInfo) -> dict[str, Any]:
    """A field's range, ``{"gt": 0, "le": 1000}``: on the field, or on its number in ``float | auto``."""
    found: dict[str, Any] = {}
    metadata = list(info.metadata)
    for member in typing.get_args(info.annotation):
        if typing.get_origin(member) is typing.Annotated:
            for item in typing.get_args(member)[1:]:
                metadata += getattr(item, "metadata", [item])
    for item in metadata:
        for name in ("gt", "ge", "lt", "le"):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                found[name] = getattr(item, name)
    return found


def _number(value: Any) -> str:
    return f"{float(value):.3g}" if abs(value) >= 10**12 else str(value)


def range_text(info: FieldInfo, failed: str | None = None) -> str | None:
    """How a field's range reads: its own words (``range=``), a fraction's interval, or the bound that
    ``failed`` (``gt``/``ge``/``lt``/``le``; both bounds for the help when None)."""
    if extra(info, "range"):
        return extra(info, "range")
    b = bounds(info)
    if "lt" in b and ("ge" in b or "gt" in b):
        return f"in [{b['ge']}, {b['lt']})" if "ge" in b else f"between {b['gt']} and {b['lt']}"
    lower = (
        "positive"
        if b.get("gt") == 0
        else "zero or positive"
        if b.get("ge") == 0
        else f"at least {b['ge']}"
        if "ge" in b
        else f"above {b['gt']}"
        if "gt" in b
        else None
    )
    upper = f"at most {b['le']}" if "le" in b else f"below {b['lt']}" if "lt" in b else None
    if failed is None:
        return ", ".join(p for p in (lower, upper) if p) or None
    return lower if failed in ("gt", "ge") else upper


def _out_of_range(cls: type, key: str, info: FieldInfo, error: Any, value: Any) -> str:
    failed = next(iter(error.get("ctx") or {"gt": 0}))
    base = field_shape(cls, key).base
    if base in (int, float) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = base(value)  # as the field holds it: lr=-1 is -1.0
    default = default_of(info)
    fix = f": pass e.g. {key}={default}" if default is not None else ""
    return f"{key} must be {range_text(info, failed)}, got {_number(value)}{fix}"
