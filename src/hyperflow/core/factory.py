"""A user's function, ``package.module:function``, found without torch: ``model=`` (a model factory) and a search's
``objective=`` are checked when a command starts, before torch is imported (the module itself may import it)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from hyperflow.errors import UsageError


def import_factory(spec: str, setting: str = "model") -> Callable[..., Any]:
    """Import ``package.module:function`` (a dotted ``Class.method`` too); the current directory is searched too,
    like ``python -m``. ``setting``: the setting that names it, for the one-line errors."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{setting} '{spec}' must look like package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the user's module raises on import
        raise UsageError(
            f"{setting} '{spec}': cannot import module '{module_name}' ({type(exc).__name__}: {exc}); "
            f"make sure it is importable from the current directory or PYTHONPATH"
        ) from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise UsageError(f"{setting} '{spec}': module '{module_name}' has no function '{attr}'")
    return factory
