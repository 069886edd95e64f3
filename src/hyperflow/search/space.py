"""Search spaces in YAML -> hyperopt expressions, and -> the list of points of a grid.

Format, one key per training setting (see ``hyperflow train --help``)::

    lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}      # also uniform, quniform (q), int
    width: {type: choice, values: [64, 128, 256]}
    epochs: 20                                             # a fixed value
    optimizer:                                             # a conditional: sub-spaces per value
      type: choice
      options:
        adam: {}
        sgd: {momentum: {type: uniform, low: 0.5, high: 0.99}}

Grid search needs a finite set per dimension: ``choice`` and ``int`` enumerate their values; continuous
dimensions take ``grid: N`` points (default 3; log-spaced for loguniform).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from hyperopt import hp
from hyperopt.pyll import scope

from hyperflow.config import TrainConfig, coerce
from hyperflow.errors import UsageError

TYPES = ("uniform", "loguniform", "quniform", "int", "choice")
SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
_SETTINGS = set(TrainConfig.__dataclass_fields__)


def default_space_path(task: str) -> Path:
    return SPACES_DIR / f"{task}.yaml"


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and validate a space file; one-line errors that name the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"space file '{path}' not found: pass a YAML search space with space=PATH "
                         f"(defaults live in {SPACES_DIR})")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise UsageError(f"space file '{path}' is not valid YAML: fix its syntax") from None
    if not isinstance(spec, dict) or not spec:
        raise UsageError(f"space file '{path}' must map setting names to dimensions, e.g. "
                         f"'lr: {{type: loguniform, low: 1.0e-4, high: 1.0e-1}}'")
    validate_space(spec)
    return spec


def _is_dimension(value: Any) -> bool:
    return isinstance(value, dict) and "type" in value


def validate_space(spec: dict[str, Any], where: str = "") -> None:
    for name, value in spec.items():
        label = f"{where}{name}"
        if name not in _SETTINGS:
            raise UsageError(f"search space: unknown parameter '{label}': use a training setting "
                             f"(see 'hyperflow train --help')")
        if not _is_dimension(value):
            if isinstance(value, dict):
                raise UsageError(f"search space: '{label}' needs a type ({', '.join(TYPES)}) or a plain value")
            coerce(name, value)
            continue
        kind = value["type"]
        if kind not in TYPES:
            raise UsageError(f"search space: '{label}' has unknown type '{kind}': use one of {', '.join(TYPES)}")
        if kind == "choice":
            options, values = value.get("options"), value.get("values")
            if (options is None) == (values is None):
                raise UsageError(f"search space: choice '{label}' needs either 'values: [...]' or "
                                 f"'options: {{value: {{sub-space}}}}'")
            if values is not None and (not isinstance(values, list) or not values):
                raise UsageError(f"search space: choice '{label}' needs a non-empty list of values")
            for v in values or []:
                coerce(name, v)
            for option, sub in (options or {}).items():
                coerce(name, option)
                if not isinstance(sub, dict):
                    raise UsageError(f"search space: option '{option}' of '{label}' must map to a sub-space "
                                     f"(use {{}} for none)")
                validate_space(sub, f"{label}={option}/")
            continue
        try:
            low, high = float(value["low"]), float(value["high"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"search space: '{label}' ({kind}) needs numbers 'low' and 'high'") from None
        if low >= high:
            raise UsageError(f"search space: '{label}' needs low < high, got low={low}, high={high}")
        if kind == "loguniform" and low <= 0:
            raise UsageError(f"search space: loguniform '{label}' needs low > 0 (a log range), got low={low}")
        if kind == "quniform" and float(value.get("q", 0)) <= 0:
            raise UsageError(f"search space: quniform '{label}' needs a step q > 0")
        if kind == "int" and (low != int(low) or high != int(high)):
            raise UsageError(f"search space: int '{label}' needs whole-number bounds, got {low}..{high}")


# ------------------------------------------------------------------------------------------ hyperopt

def to_hyperopt(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The hyperopt expression of a space: a dict whose sampled value is a (nested) dict of settings."""
    out: dict[str, Any] = {}
    for name, value in spec.items():
        label = f"{prefix}{name}"
        if not _is_dimension(value):
            out[name] = value
            continue
        kind = value["type"]
        if kind == "choice" and "options" in value:
            out[f"__choice__{name}"] = hp.choice(label, [
                {name: option, **to_hyperopt(sub, f"{label}={option}/")} for option, sub in value["options"].items()])
        elif kind == "choice":
            out[name] = hp.choice(label, list(value["values"]))
        elif kind == "uniform":
            out[name] = hp.uniform(label, float(value["low"]), float(value["high"]))
        elif kind == "loguniform":
            out[name] = hp.loguniform(label, math.log(float(value["low"])), math.log(float(value["high"])))
        elif kind == "quniform":
            out[name] = hp.quniform(label, float(value["low"]), float(value["high"]), float(value["q"]))
        else:  # int: uniform over the whole numbers low..high, sampled as ints (quniform gives floats)
            out[name] = scope.int(hp.quniform(label, float(value["low"]) - 0.5, float(value["high"]) + 0.5, 1))
    return out


def flatten(sample: dict[str, Any]) -> dict[str, Any]:
    """A sampled (nested) point as flat settings, with ints as ints."""
    flat: dict[str, Any] = {}
    for key, value in sample.items():
        if key.startswith("__choice__"):
            flat.update(flatten(value))
        else:
            flat[key] = int(value) if isinstance(value, float) and value.is_integer() and _is_int(key) else value
    return flat


def _is_int(key: str) -> bool:
    return TrainConfig.__dataclass_fields__[key].type in ("int", int)


# ------------------------------------------------------------------------------------------ grid

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
        if not _is_dimension(value):
            axes.append([{name: value}])
        elif value["type"] == "choice" and "options" in value:
            axes.append([{name: option, **sub_point} for option, sub in value["options"].items()
                         for sub_point in iter_grid(sub)])
        else:
            axes.append([{name: v} for v in _grid_values(name, value)])
    for combo in itertools.product(*axes):
        yield dict(item for part in combo for item in part.items())


def grid_points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_grid(spec))


# ------------------------------------------------------------------------------------------ hyperopt docs

def to_vals(spec: dict[str, Any], flat: dict[str, Any], prefix: str = "", active: bool = True) -> dict[str, list]:
    """hyperopt's ``misc.vals`` for a flat point: label -> [value] (choice: [index]) when the label is
    active, [] when a conditional left it out. Used to rebuild trials from MLflow and to seed points."""
    vals: dict[str, list] = {}
    for name, value in spec.items():
        if not _is_dimension(value):
            continue
        label = f"{prefix}{name}"
        if value["type"] == "choice" and "options" in value:
            options = list(value["options"])
            chosen = flat.get(name) if active else None
            vals[label] = [options.index(chosen)] if active else []
            for option, sub in value["options"].items():
                vals.update(to_vals(sub, flat, f"{label}={option}/", active and option == chosen))
        elif not active:
            vals[label] = []
        elif value["type"] == "choice":
            vals[label] = [list(value["values"]).index(flat[name])]
        else:
            vals[label] = [flat[name]]
    return vals


def _middle(value: dict[str, Any]) -> Any:
    kind = value["type"]
    if kind == "choice":
        return value["values"][0] if "values" in value else next(iter(value["options"]))
    low, high = float(value["low"]), float(value["high"])
    if kind == "loguniform":
        return math.sqrt(low * high)
    if kind == "int":
        return int(round((low + high) / 2))
    if kind == "quniform":
        q = float(value["q"])
        return round((low + high) / 2 / q) * q
    return (low + high) / 2


def complete_point(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any] | None:
    """A full flat point from some given settings (others at the middle of their range); None when a
    given value lies outside the space."""
    point: dict[str, Any] = {}
    for name, value in spec.items():
        if not _is_dimension(value):
            continue
        if name not in given:
            point[name] = _middle(value)
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
