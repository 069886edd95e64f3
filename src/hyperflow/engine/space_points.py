"""The points of a space, flat (fixed values included): probe points that together show every value the space
can produce (checked when a command starts: :func:`check_space_file`), whether a point is one the space can
produce, and a point completed from some given settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hyperflow.config import TrainConfig
from hyperflow.engine.grid import check_grid
from hyperflow.engine.space import config_at, finite_number, is_dimension, load_space


def check_space_file(path: str | Path, base: TrainConfig, grid: bool = False) -> dict[str, Any]:
    """The space file read and validated, a grid's size checked, and every probe point (both ends of each
    range, every choice value, in every branch) a valid configuration of ``base``: what needs neither the
    data nor torch, checked when the command starts (the search checks the rest once the data are loaded)."""
    spec = load_space(path)
    if grid:
        check_grid(spec)
    for point in probe_points(spec):
        config_at(base, point)
    return spec


def _extremes(value: dict[str, Any]) -> list[Any]:
    """The values a dimension can take at its edges (a choice: all of them): what hyperopt can sample."""
    kind = value["type"]
    if kind == "choice":
        return list(value["values"]) if "values" in value else list(value["options"])
    low, high = float(value["low"]), float(value["high"])
    if kind == "int":
        return [int(low), int(high)]
    if kind == "quniform":
        q = float(value["q"])
        return [float(np.round(low / q) * q), float(np.round(high / q) * q)]
    return [low, high]


def probe_points(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Points that together show every value the space can produce: the middle point, then each choice
    value and both ends of each range in turn (in every branch of every conditional), everything else at
    the middle. A value invalid for some points only is caught here, before the first trial, without
    enumerating the space (which may be astronomically large)."""
    yield _point(spec, {}, ())
    for path, label, value in _probe_dimensions(spec, ()):
        for v in _extremes(value):
            yield _point(spec, {**dict(path), label: v}, path)


def _probe_dimensions(spec: dict[str, Any], path: tuple, prefix: str = "") -> Iterator[tuple[tuple, str, dict]]:
    for name, value in spec.items():
        if not is_dimension(value):
            continue
        label = f"{prefix}{name}"
        yield path, label, value
        for option, sub in (value.get("options") or {}).items():
            yield from _probe_dimensions(sub, (*path, (label, option)), f"{label}={option}/")


def _point(spec: dict[str, Any], given: dict[str, Any], path: tuple, prefix: str = "") -> dict[str, Any]:
    """A full flat point (fixed values included): ``given`` values by label, the rest at the middle."""
    point: dict[str, Any] = {}
    for name, value in spec.items():
        label = f"{prefix}{name}"
        if not is_dimension(value):
            point[name] = value
            continue
        point[name] = given[label] if label in given else _default_value(value)
        if value["type"] == "choice" and "options" in value:
            point.update(_point(value["options"][point[name]], given, path, f"{label}={point[name]}/"))
    return point


def contains(spec: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether ``point`` (flat, fixed values included) is one the space can produce: every key it sets is a
    key of the space (in the branches it chose), fixed values equal, sampled values inside their ranges."""
    seen: set[str] = set()
    if not _contains(spec, point, seen):
        return False
    return seen == set(point)


def _contains(spec: dict[str, Any], point: dict[str, Any], seen: set[str]) -> bool:
    for name, value in spec.items():
        if name not in point:
            return False
        seen.add(name)
        v = point[name]
        if not is_dimension(value):
            if not _equal(v, value):
                return False
            continue
        kind = value["type"]
        if kind == "choice":
            allowed = list(value["values"]) if "values" in value else list(value["options"])
            match = next((a for a in allowed if _equal(v, a)), _MISSING)
            if match is _MISSING:
                return False
            if "options" in value and not _contains(value["options"][match], point, seen):
                return False
            continue
        number = finite_number(v)
        if number is None:
            return False
        low, high = float(value["low"]), float(value["high"])
        slack = float(value["q"]) / 2 if kind == "quniform" else 1e-9 * max(abs(low), abs(high))
        if not low - slack <= number <= high + slack or (kind == "int" and number != int(number)):
            return False
    return True


_MISSING = object()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _default_value(value: dict[str, Any]) -> Any:
    """A dimension's value when none is given: the centre of a range (geometric for loguniform), the first
    value of a choice."""
    kind = value["type"]
    if kind == "choice":
        return value["values"][0] if "values" in value else next(iter(value["options"]))
    low, high = float(value["low"]), float(value["high"])
    if kind == "loguniform":
        return math.sqrt(low * high)
    if kind == "int":
        return round((low + high) / 2)
    if kind == "quniform":
        q = float(value["q"])
        return round((low + high) / 2 / q) * q
    return (low + high) / 2


def complete_point(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any] | None:
    """A full flat point from some given settings (others at the middle of their range); None when a
    given value lies outside the space."""
    point: dict[str, Any] = {}
    for name, value in spec.items():
        if not is_dimension(value):
            continue
        if name not in given:
            point[name] = _default_value(value)
        else:
            v = given[name]
            kind = value["type"]
            if kind == "choice":
                allowed = value.get("values") or list(value.get("options", {}))
                if v not in allowed:
                    return None
            elif not float(value["low"]) <= float(v) <= float(value["high"]):
                return None
            point[name] = v
        if value["type"] == "choice" and "options" in value:
            sub = complete_point(value["options"][point[name]], given)
            if sub is None:
                return None
            point.update(sub)
    return point
