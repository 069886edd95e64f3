"""Search spaces in YAML: the format, read and validated (one-line errors naming the key and the fix), and a
point of a space applied to the search's settings.

Format, one key per training setting (see ``hyperflow train --help``)::

    lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}      # also uniform, quniform (q), int
    width: {type: choice, values: [64, 128, 256]}
    epochs: 20                                             # a fixed value
    optimizer:                                             # a conditional: sub-spaces per value
      type: choice
      options:
        adam: {}
        sgd: {momentum: {type: uniform, low: 0.5, high: 0.99}}

Continuous dimensions may say ``grid: N``, their number of points in a grid search (:mod:`hyperflow.engine.grid`).
The space's points are in :mod:`hyperflow.engine.space_points`, its hyperopt expressions in
:mod:`hyperflow.engine.space_hyperopt`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

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
    choices = value.get("values") or list(value.get("options") or ()) if is_dimension(value) else [value]
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


def load_space(path: str | Path, free: bool = False) -> dict[str, Any]:
    """Read and validate a space file; one-line errors that name the key and the fix. ``free``: the parameters
    of an objective of the user's own (any name, plain values as written), not hyperflow's training settings."""
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
    validate_space(spec, free=free)
    return spec


def config_at(base: TrainConfig, point: dict[str, Any]) -> TrainConfig:
    """``base`` with a point of the space applied; an invalid combination is a usage error naming the point."""
    try:
        return base.replace(**point)
    except UsageError as exc:
        raise UsageError(f"search space gives an invalid combination {point}: {exc}") from None


def is_dimension(value: Any) -> bool:
    return isinstance(value, dict) and "type" in value


DIMENSION_KEYS = {
    "choice": {"type", "values", "options"},
    "int": {"type", "low", "high"},
    "quniform": {"type", "low", "high", "q", "grid"},
    "uniform": {"type", "low", "high", "grid"},
    "loguniform": {"type", "low", "high", "grid"},
}
MAX_GRID_AXIS = 10_000  # ``grid: N`` points of one continuous dimension


def finite_number(value: Any) -> float | None:
    """A finite number from YAML (also a numeric string: PyYAML reads ``1e-4`` as one), not a bool, NaN or
    infinity; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        value = float(value)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def validate_space(
    spec: dict[str, Any], where: str = "", outer: frozenset[str] = frozenset(), free: bool = False
) -> None:
    """The shape of every entry, every branch of every conditional included (``outer``: the names set by
    enclosing levels, which a sub-space may not set again; ``free``: an objective's own parameters, of any
    name, whose plain values and choices are taken as written)."""
    names = outer | {n for n in spec if isinstance(n, str)}
    for name, value in spec.items():
        label = f"{where}{name}"
        if free:
            if not isinstance(name, str) or not name:
                raise UsageError(f"search space: parameter names are text, got {name!r} in '{where or 'the space'}'")
        elif name not in _SETTINGS:
            raise UsageError(
                f"search space: unknown parameter '{label}': use a training setting (see 'hyperflow train --help')"
            )
        if name in outer:
            raise UsageError(f"search space: '{label}' is set both inside a conditional and around it: keep one")
        if not free:
            check_trial_key(name, label, value)
        if not is_dimension(value):
            if isinstance(value, dict) and (free or name != "model_kwargs"):
                raise UsageError(f"search space: '{label}' needs a type ({', '.join(TYPES)}) or a plain value")
            if not free:
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
            _validate_choice(name, label, value, names, free)
            continue
        low, high = finite_number(value.get("low")), finite_number(value.get("high"))
        if low is None or high is None:
            raise UsageError(f"search space: '{label}' ({kind}) needs numbers 'low' and 'high' (finite ones)")
        if low >= high:
            raise UsageError(f"search space: '{label}' needs low < high, got low={low}, high={high}")
        if kind == "loguniform" and low <= 0:
            raise UsageError(f"search space: loguniform '{label}' needs low > 0 (a log range), got low={low}")
        if kind == "quniform":
            q = finite_number(value.get("q"))
            if q is None or q <= 0:
                raise UsageError(
                    f"search space: quniform '{label}' needs a step q, a number > 0 (got {value.get('q')!r})"
                )
        if kind == "int" and (low != int(low) or high != int(high)):
            raise UsageError(f"search space: int '{label}' needs whole-number bounds, got {low}..{high}")
        value["low"], value["high"] = (int(low), int(high)) if kind == "int" else (low, high)
        if kind == "quniform":
            value["q"] = finite_number(value["q"])
        if "grid" in value:
            grid = finite_number(value["grid"])
            if grid is None or grid != int(grid) or not 1 <= grid <= MAX_GRID_AXIS:
                raise UsageError(
                    f"search space: '{label}' has grid: {value['grid']!r}: give the number of grid "
                    f"points, a whole number from 1 to {MAX_GRID_AXIS}"
                )


def _validate_choice(name: str, label: str, value: dict[str, Any], names: frozenset[str], free: bool) -> None:
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
        if not free:
            value["values"] = [coerce(name, v, TrainConfig) for v in values]
        return
    if not isinstance(options, dict) or not options:
        raise UsageError(
            f"search space: choice '{label}' needs 'options' as a mapping of each value to its "
            f"sub-space, e.g. 'options: {{adam: {{}}, sgd: {{momentum: 0.9}}}}' (a list of plain "
            f"values goes under 'values:')"
        )
    for option, sub in options.items():
        if not free:
            coerce(name, option, TrainConfig)
        if sub is None:
            options[option] = sub = {}
        if not isinstance(sub, dict) or is_dimension(sub):
            raise UsageError(
                f"search space: option '{option}' of '{label}' must map to a sub-space (use {{}} for none)"
            )
        validate_space(sub, f"{label}={option}/", names, free)
