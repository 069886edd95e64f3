"""The YAML files a command reads (config=, and the space and gate files): a key given twice is refused, a file
that is not UTF-8 text or not YAML is one line naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hyperflow.errors import UsageError


class DuplicateKey(yaml.YAMLError):
    """A mapping that names one key twice: YAML lets the last one win without a word."""

    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"'{key}' appears twice (lines {first} and {again}): keep one")


class _UniqueKeys(yaml.SafeLoader):
    """yaml.SafeLoader, refusing a key given twice in one mapping."""


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise DuplicateKey(key, seen[key] + 1, key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: SafeLoader refuses it itself
            pass
    return loader.construct_mapping(node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice (:class:`DuplicateKey`, a ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeys)


def read_text(path: Path, what: str) -> str:
    """A YAML (or other text) file's contents: one line when its bytes are not UTF-8 text (a binary file);
    OSError passes to the caller, which knows what a missing file means."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} '{path}' is not UTF-8 text (byte {exc.start} cannot be read): pass a YAML file saved as UTF-8"
        ) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of settings; a clear error when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file '{path}' not found: pass an existing YAML file with config=PATH")
    try:
        loaded = safe_load(read_text(path, "config file")) or {}
    except OSError as exc:
        raise UsageError(f"config file '{path}' cannot be read: {exc.strerror or exc}") from None
    except DuplicateKey as exc:
        raise UsageError(f"config file '{path}': {exc}") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UsageError(f"config file '{path}' is not valid YAML{where}: fix its syntax") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"config file '{path}' must be a mapping of settings, e.g. 'epochs: 20'")
    return loaded
