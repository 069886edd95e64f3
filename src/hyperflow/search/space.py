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

Over 300 lines on purpose: every function here reads the same YAML format (validation, grid, probe points,
membership, hyperopt expressions, hyperopt ``vals``), and one module keeps that format in one place.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hyperflow.config import TrainConfig, coerce
from hyperflow.config.files import DuplicateKey, read_text, safe_load
from hyperflow.errors import UsageError

TYPES = ("uniform", "loguniform", "quniform", "int", "choice")
SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
_SETTINGS = set(TrainConfig.__dataclass_fields__)
# Settings a trial cannot vary, and why: the search loads the data once, names and records the trials' runs
# itself, and builds each trial's config as the search's settings with the point applied (so a preset's values
# never reach it, and no trial runs the LR range test). A space that sets one is refused, not ignored.
FIXED_PER_SEARCH = (
    dict.fromkeys(
        ("data", "target", "task", "split_column", "val_size", "test_size"),
        "the data are loaded and split once for the whole search",
    )
    | dict.fromkeys(
        ("experiment", "run_name", "model_name", "log_model", "tensorboard", "flush_secs", "progress"),
        "the search names, records and registers the trials' runs itself",
    )
    | dict.fromkeys(
        ("start_lr", "end_lr", "num_iter", "sweep", "suggestion", "repeats", "sweep_loss"),
        "no trial runs the LR range test; lr_bounds=auto runs it once, with the search's settings",
    )
    | {
        "preset": "a trial's settings are the search's with the point applied, so a preset's values never reach it "
        "(put its settings in the space: optimizer, schedule, ...)"
    }
)
VARIED = [n for n in TrainConfig.__dataclass_fields__ if n not in FIXED_PER_SEARCH]
AUTO_LRS = ("lr", "max_lr", "base_lr")  # 'auto' needs the LR range test, which a trial does not run


def check_trial_key(name: str, label: str, value: Any) -> None:
    """Refuse (one line) a space key no trial can vary (:data:`FIXED_PER_SEARCH`), naming those it can, and an
    ``auto`` learning rate (a fixed value or a choice's): needs only the parsed YAML, so it can run first."""
    if name in FIXED_PER_SEARCH:
        raise UsageError(
            f"search space: '{label}' cannot vary per trial: {FIXED_PER_SEARCH[name]}; set {name}=... "
            f"for the whole search instead. A space varies: {', '.join(VARIED)}"
        )
    choices = value.get("values") or list(value.get("options") or ()) if _is_dimension(value) else [value]
    if name in AUTO_LRS and any(isinstance(v, str) and v.strip().lower() == "auto" for v in choices):
        raise UsageError(
            f"search space: '{label}: auto' needs the LR range test, which a trial does not run: "
            f"search lr within a range (lr: {{type: loguniform, low: 1.0e-4, high: 1.0e-1}}) and pass "
            f"lr_bounds=auto to fit that range with one range test"
        )


def check_auto_lrs(base: TrainConfig) -> None:
    """Refuse (one line) a search whose settings say ``lr=auto`` (or ``max_lr``, ``base_lr``): like ``lr: auto``
    in a space, it needs the LR range test, which a trial does not run (each would train at a placeholder)."""
    for name in AUTO_LRS:
        if getattr(base, name) == "auto":
            raise UsageError(
                f"{name}=auto needs the LR range test, which a search's trials do not run: pass "
                f"lr_bounds=auto to run it once and search lr within its range, or give {name} a "
                f"number"
            )


def default_space_path(task: str) -> Path:
    return SPACES_DIR / f"{task}.yaml"


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and validate a space file; one-line errors that name the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"space file '{path}' not found: pass a YAML search space with space=PATH (defaults live in {SPACES_DIR})"
        )
    try:
        text = read_text(path, "space file")
    except OSError as exc:
        raise UsageError(f"space file '{path}' cannot be read: {exc.strerror or exc}") from None
    try:
        spec = safe_load(text)
    except DuplicateKey as exc:
        raise UsageError(f"space file '{path}': {exc}") from None
    except yaml.YAMLError:
        raise UsageError(f"space file '{path}' is not valid YAML: fix its syntax") from None
    if not isinstance(spec, dict) or not spec:
        raise UsageError(
            f"space file '{path}' must map setting names to dimensions, e.g. "
            f"'lr: {{type: loguniform, low: 1.0e-4, high: 1.0e-1}}'"
        )
    validate_space(spec)
    return spec


def config_at(base: TrainConfig, point: dict[str, Any]) -> TrainConfig:
    """``base`` with a point of the space applied; an invalid combination is a usage error naming the point."""
    try:
        return base.replace(**point)
    except UsageError as exc:
        raise UsageError(f"search space gives an invalid combination {point}: {exc}") from None


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


def _is_dimension(value: Any) -> bool:
    return isinstance(value, dict) and "type" in value


DIMENSION_KEYS = {
    "choice": {"type", "values", "options"},
    "int": {"type", "low", "high"},
    "quniform": {"type", "low", "high", "q", "grid"},
    "uniform": {"type", "low", "high", "grid"},
    "loguniform": {"type", "low", "high", "grid"},
}
MAX_GRID_AXIS = 10_000  # ``grid: N`` points of one continuous dimension
MAX_GRID_POINTS = 100_000  # a grid search larger than this is refused before anything runs


def _finite_number(value: Any) -> float | None:
    """A finite number from YAML (also a numeric string: PyYAML reads ``1e-4`` as one), not a bool, NaN or
    infinity; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        value = float(value)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def validate_space(spec: dict[str, Any], where: str = "", outer: frozenset[str] = frozenset()) -> None:
    """The shape of every entry, every branch of every conditional included (``outer``: the names set by
    enclosing levels, which a sub-space may not set again)."""
    names = outer | {n for n in spec if isinstance(n, str)}
    for name, value in spec.items():
        label = f"{where}{name}"
        if name not in _SETTINGS:
            raise UsageError(
                f"search space: unknown parameter '{label}': use a training setting (see 'hyperflow train --help')"
            )
        if name in outer:
            raise UsageError(f"search space: '{label}' is set both inside a conditional and around it: keep one")
        check_trial_key(name, label, value)
        if not _is_dimension(value):
            if isinstance(value, dict) and name != "model_kwargs":
                raise UsageError(f"search space: '{label}' needs a type ({', '.join(TYPES)}) or a plain value")
            spec[name] = coerce(name, value, TrainConfig)  # typed: '1e-3' (a string to PyYAML) becomes 0.001
            continue
        kind = value["type"]
        if kind not in TYPES:
            raise UsageError(f"search space: '{label}' has unknown type '{kind}': use one of {', '.join(TYPES)}")
        unknown = sorted(str(k) for k in value if k not in DIMENSION_KEYS[kind])
        if unknown:
            raise UsageError(
                f"search space: {kind} '{label}' has unknown key(s) {', '.join(unknown)}: it takes "
                f"{', '.join(sorted(DIMENSION_KEYS[kind] - {'type'}))}"
            )
        if kind == "choice":
            _validate_choice(name, label, value, names)
            continue
        low, high = _finite_number(value.get("low")), _finite_number(value.get("high"))
        if low is None or high is None:
            raise UsageError(f"search space: '{label}' ({kind}) needs numbers 'low' and 'high' (finite ones)")
        if low >= high:
            raise UsageError(f"search space: '{label}' needs low < high, got low={low}, high={high}")
        if kind == "loguniform" and low <= 0:
            raise UsageError(f"search space: loguniform '{label}' needs low > 0 (a log range), got low={low}")
        if kind == "quniform":
            q = _finite_number(value.get("q"))
            if q is None or q <= 0:
                raise UsageError(
                    f"search space: quniform '{label}' needs a step q, a number > 0 (got {value.get('q')!r})"
                )
        if kind == "int" and (low != int(low) or high != int(high)):
            raise UsageError(f"search space: int '{label}' needs whole-number bounds, got {low}..{high}")
        value["low"], value["high"] = (int(low), int(high)) if kind == "int" else (low, high)
        if kind == "quniform":
            value["q"] = _finite_number(value["q"])
        if "grid" in value:
            grid = _finite_number(value["grid"])
            if grid is None or grid != int(grid) or not 1 <= grid <= MAX_GRID_AXIS:
                raise UsageError(
                    f"search space: '{label}' has grid: {value['grid']!r}: give the number of grid "
                    f"points, a whole number from 1 to {MAX_GRID_AXIS}"
                )


def _validate_choice(name: str, label: str, value: dict[str, Any], names: frozenset[str]) -> None:
    options, values = value.get("options"), value.get("values")
    if (options is None) == (values is None):
        raise UsageError(
            f"search space: choice '{label}' needs either 'values: [...]' or 'options: {{value: {{sub-space}}}}'"
        )
    if values is not None:
        if not isinstance(values, list) or not values:
            raise UsageError(
                f"search space: choice '{label}' needs a non-empty list of values, e.g. 'values: [64, 128]'"
            )
        value["values"] = [coerce(name, v, TrainConfig) for v in values]
        return
    if not isinstance(options, dict) or not options:
        raise UsageError(
            f"search space: choice '{label}' needs 'options' as a mapping of each value to its "
            f"sub-space, e.g. 'options: {{adam: {{}}, sgd: {{momentum: 0.9}}}}' (a list of plain "
            f"values goes under 'values:')"
        )
    for option, sub in options.items():
        coerce(name, option, TrainConfig)
        if sub is None:
            options[option] = sub = {}
        if not isinstance(sub, dict) or _is_dimension(sub):
            raise UsageError(
                f"search space: option '{option}' of '{label}' must map to a sub-space (use {{}} for none)"
            )
        validate_space(sub, f"{label}={option}/", names)


def grid_size(spec: dict[str, Any]) -> int:
    """How many points ``iter_grid`` would give, computed without enumerating them."""
    size = 1
    for value in spec.values():
        if not _is_dimension(value):
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
        if _is_dimension(value):
            yield f"{prefix}{name}", value
            for option, sub in (value.get("options") or {}).items():
                yield from _dimensions(sub, f"{prefix}{name}={option}/")


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
        if not _is_dimension(value):
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
        if not _is_dimension(value):
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
        if not _is_dimension(value):
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
        number = _finite_number(v)
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


# ------------------------------------------------------------------------------------------ hyperopt


def to_hyperopt(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The hyperopt expression of a space: a dict whose sampled value is a (nested) dict of settings."""
    from hyperopt import hp  # here: a space file is read and checked before hyperopt is imported
    from hyperopt.pyll import scope

    out: dict[str, Any] = {}
    for name, value in spec.items():
        label = f"{prefix}{name}"
        if not _is_dimension(value):
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
        if not _is_dimension(value):
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
