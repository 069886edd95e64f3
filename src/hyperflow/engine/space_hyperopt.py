"""A space in hyperopt's terms: its expression (``hp.*``, hyperopt's public API), a sampled point flattened, and
a flat point as hyperopt's ``misc.vals`` (rebuilding trials from MLflow, seeding points). Only hyperopt's public
API is used here; its internals stay in :mod:`hyperflow.engine.hyperopt_records` (contract "hyperopt-in-the-engine").
"""

from __future__ import annotations

import math
from typing import Any

from hyperflow.config import TrainConfig
from hyperflow.engine.space import is_dimension


def to_hyperopt(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The hyperopt expression of a space: a dict whose sampled value is a (nested) dict of settings."""
    from hyperopt import hp  # here: a space file is read and checked before hyperopt is imported
    from hyperopt.pyll import scope

    out: dict[str, Any] = {}
    for name, value in spec.items():
        label = f"{prefix}{name}"
        if not is_dimension(value):
            out[name] = value
            continue
        kind = value["type"]
        if kind == "choice" and "options" in value:
            out[f"__choice__{name}"] = hp.choice(
                label,
                [{name: option, **to_hyperopt(sub, f"{label}={option}/")} for option, sub in value["options"].items()],
            )
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


def to_vals(spec: dict[str, Any], flat: dict[str, Any], prefix: str = "", active: bool = True) -> dict[str, list]:
    """hyperopt's ``misc.vals`` for a flat point: label -> [value] (choice: [index]) when the label is
    active, [] when a conditional left it out. Used to rebuild trials from MLflow and to seed points."""
    vals: dict[str, list] = {}
    for name, value in spec.items():
        if not is_dimension(value):
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
