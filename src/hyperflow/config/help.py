"""The settings part of ``hyperflow <command> --help``, made from the fields: each setting's help, its choices,
its range and its default, so the help cannot drift from what the command accepts."""

from __future__ import annotations

from collections.abc import Iterable

from hyperflow.config.fields import default_of, field_shape, fields_of
from hyperflow.config.messages import range_text


def setting_help(cls: type, key: str) -> str:
    """One setting's help: its description, then its choices (a | b) and its range."""
    info = fields_of(cls)[key]
    shape = field_shape(cls, key)
    parts = [info.description or ""]
    if shape.choices:
        parts.append(" | ".join(shape.choices))
    limits = range_text(info)
    if limits:
        parts.append(limits)
    return "; ".join(p for p in parts if p)


def settings_lines(cls: type, keys: Iterable[str] | None = None) -> list[str]:
    """``  name  help (default)`` for every setting of ``cls`` (or those ``keys``), names aligned."""
    keys = list(fields_of(cls) if keys is None else keys)
    width = max(len(k) for k in keys) + 1
    return [f"  {k:<{width}} {setting_help(cls, k)} ({default_of(fields_of(cls)[k])})" for k in keys]
