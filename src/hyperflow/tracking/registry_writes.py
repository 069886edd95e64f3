"""Writes to the model registry: models, aliases, version and model tags, a version's description. A write
that another job's write at the same moment refuses is sent again (sqlite: UNIQUE constraint, locked)."""

from __future__ import annotations

import time
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow.tracking.registry import registry_error


def move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    try:
        client.set_registered_model_alias(name, alias, version)
    except Exception as exc:
        raise registry_error(
            exc, f"moving alias '{alias}' of model '{name}' to version {version}", client=client
        ) from None


def create_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except Exception as exc:
        raise registry_error(exc, f"creating model '{name}'", client=client) from None


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``; MLflow's error as it is (see :func:`move_alias` for the guarded move)."""
    client.set_registered_model_alias(name, alias, version)


WRITE_ATTEMPTS = 5  # a version written by two jobs at once: a write refused by the other's is sent again
_CLASHES = ("BAD_REQUEST", "TEMPORARILY_UNAVAILABLE")  # how sqlite's UNIQUE constraint and lock errors come back


def set_version_tags(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    """Tags of a model version, one call each, in the order given. A tag first written by two jobs at once
    makes one insert fail (sqlite: UNIQUE constraint): it is sent again, and then updates the tag."""
    for key, value in tags.items():
        _again(lambda key=key, value=value: client.set_model_version_tag(name, version, key, value))


def _again(call: Any) -> Any:
    """``call()``, sent again (up to WRITE_ATTEMPTS times) when the store refuses it for another job's write at
    the same moment; any other error at once."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return call()
        except MlflowException as exc:
            if exc.error_code not in _CLASHES or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def add_to_description(client: MlflowClient, name: str, version: str, line: str, prefix: str, line_id: str) -> None:
    """Append one line to a version's description without losing another job's line. MLflow can only replace
    a description, so two jobs appending at once would each write what they read plus their own line, and one
    line would be lost. Each line is therefore kept first in a version tag of its own (``<prefix><line_id>``:
    tags of different keys never overwrite each other), then the description is written with every such tag's
    line it lacks, and read back until it holds them all: the last job to write it reads back after every
    other job wrote its tag, so it adds any line that another write dropped."""
    _again(lambda: client.set_model_version_tag(name, version, prefix + line_id, line))
    for _ in range(WRITE_ATTEMPTS):
        mv = _again(lambda: client.get_model_version(name, version))
        text = mv.description or ""
        missing = sorted({v for k, v in mv.tags.items() if k.startswith(prefix)} - set(text.splitlines()))
        if not missing:
            return
        description = "\n".join([text, *missing]).strip()
        _again(lambda description=description: client.update_model_version(name, version, description=description))


def set_model_tag(client: MlflowClient, name: str, key: str, value: str) -> None:
    client.set_registered_model_tag(name, key, value)


def delete_model_tag(client: MlflowClient, name: str, key: str) -> None:
    client.delete_registered_model_tag(name, key)
