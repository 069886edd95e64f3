"""The grid of a space: its points (every combination, conditionals expanded, lazily: hyperopt has no grid
search) and its size, computed without enumerating them and refused beyond :data:`MAX_GRID_POINTS`.

Grid search needs a finite set per dimension: ``choice`` and ``int`` enumerate their values; continuous
dimensions take ``grid: N`` points (default 3; log-spaced for loguniform).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from hyperflow.engine.space import is_dimension
from hyperflow.errors import UsageError

MAX_GRID_POINTS = 100_000  # a grid search larger than this is refused before anything runs


def grid_size(spec: dict[str, Any]) -> int:
    """How many points ``iter_grid`` would give, computed without enumerating them."""
    size = 1
    for value in spec.values():
        if not is_dimension(value):
            continue
        if value["type"] == "choice" and "options" in value:
            size *= sum(grid_size(sub) for sub in value["options"].values())
        else:
            size *= _axis_size(value)
    return size


def _axis_size(value: dict[str, Any]) -> int:
    kind = value["type"]
    if kind == "choice":
        return len(value["values"])
    low, high = float(value["low"]), float(value["high"])
    if kind == "int":
        return int(high - low) + 1
    if kind == "quniform":
        q = float(value["q"])
        return max(0, math.floor((high + q / 2 - math.ceil(low / q) * q) / q) + 1)
    return int(value.get("grid", 3))


def check_grid(spec: dict[str, Any]) -> int:
    """The grid's size, or a one-line error when a grid search over ``spec`` cannot be enumerated."""
    size = grid_size(spec)
    if size > MAX_GRID_POINTS:
        widest = max(
            ((n, _axis_size(v)) for n, v in _dimensions(spec) if not (v["type"] == "choice" and "options" in v)),
            key=lambda item: item[1],
            default=("", 0),
        )
        raise UsageError(
            f"strategy=grid: the space has {size:.3g} grid points (more than {MAX_GRID_POINTS}; "
            f"'{widest[0]}' alone has {widest[1]:.3g}): narrow the ranges, lower 'grid:', or use "
            f"strategy=random or tpe"
        )
    if size == 0:
        raise UsageError(
            "strategy=grid: the space has no grid point (a quniform range holds no multiple of q): widen it or change q"
        )
    return size


def _dimensions(spec: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, dimension) of every dimension, those inside every conditional branch included."""
    for name, value in spec.items():
        if is_dimension(value):
            yield f"{prefix}{name}", value
            for option, sub in (value.get("options") or {}).items():
                yield from _dimensions(sub, f"{prefix}{name}={option}/")


def _grid_values(name: str, value: Any) -> list[Any]:
    kind = value["type"]
    low, high = float(value.get("low", 0)), float(value.get("high", 0))
    if kind == "choice":
        return list(value["values"])
    if kind == "int":
        return list(range(int(low), int(high) + 1))
    if kind == "quniform":
        q = float(value["q"])
        return [float(v) for v in np.arange(math.ceil(low / q) * q, high + q / 2, q)]
    n = int(value.get("grid", 3))
    if kind == "loguniform":
        return [float(v) for v in np.geomspace(low, high, n)]
    return [float(v) for v in np.linspace(low, high, n)]


def iter_grid(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every combination of a discretised space, conditionals expanded, lazily (hyperopt has no grid
    search)."""
    axes: list[list[dict[str, Any]]] = []
    for name, value in spec.items():
        if not is_dimension(value):
            axes.append([{name: value}])
        elif value["type"] == "choice" and "options" in value:
            axes.append(
                [
                    {name: option, **sub_point}
                    for option, sub in value["options"].items()
                    for sub_point in iter_grid(sub)
                ]
            )
        else:
            axes.append([{name: v} for v in _grid_values(name, value)])
    for combo in itertools.product(*axes):
        yield dict(item for part in combo for item in part.items())


def grid_points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_grid(spec))
