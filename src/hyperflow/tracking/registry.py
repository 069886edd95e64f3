"""The model registry, read and written the MLflow way: which version is meant (by number or alias),
the run behind a version and its training settings, what a version predicts from what, aliases and
version tags. Fails closed: only "not found" means absent; any other store failure is a RegistryError.

Versions are always resolved to a number before anything else happens, so a promotion moves the alias
to the version it scored, never to "the latest". Scoring and the gate live in ``hyperflow.workflows``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.config import TrainConfig, build_config
from hyperflow.errors import RegistryError, UsageError, whole_message, without_credentials

Client = MlflowClient  # the registry client type, for the layers above (they never import mlflow)
CHAMPION, CHALLENGER = names.CHAMPION, names.CHALLENGER
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


def default_client() -> MlflowClient:
    """A client of the registry and tracking store that MLflow's environment names."""
    return MlflowClient()


# ------------------------------------------------------------------------------------------ versions

# Only these mean "there is no such thing". Everything else (a server's 5xx, PERMISSION_DENIED, a refused
# connection, a locked or unreadable database) is an error of the store, and the registry fails closed.
# Measured in MLflow 3.17: a missing model is RESOURCE_DOES_NOT_EXIST (sqlite and REST alike); a missing
# alias is INVALID_PARAMETER_VALUE ("Registered model alias ... not found"), the same code as a malformed
# name, so that case is confirmed against the model's alias list.
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


def store_uri(uri: str | None = None) -> str:
    """A store's URI as shown in messages (default: the registry's): as configured, less any user name and
    password (:func:`hyperflow.errors.without_credentials`, the one function that strips them)."""
    return without_credentials(uri or mlflow.get_registry_uri())


def registry_error(
    exc: BaseException, doing: str, store: str = "model registry", client: MlflowClient | None = None
) -> RegistryError:
    if store == "tracking store":
        uri = mlflow.get_tracking_uri()
    else:
        uri = getattr(client, "_registry_uri", None) or mlflow.get_registry_uri()
    return RegistryError(
        f"the {store} {store_uri(uri)} failed while {doing}: {whole_message(exc)}; "
        f"nothing was moved: try again once it answers"
    )


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, MlflowException) and exc.error_code == NOT_FOUND


def registered_model(client: MlflowClient, name: str) -> Any:
    """The registered model ``name``; a one-line UsageError when there is none, RegistryError when the
    registry cannot say."""
    try:
        return client.get_registered_model(name)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(
                f"unknown model '{name}': no registered model of that name in {store_uri()} (check model_name)"
            ) from None
        raise registry_error(exc, f"reading model '{name}'", client=client) from None


def model_exists(client: MlflowClient, name: str) -> bool:
    """Whether ``name`` is a registered model; RegistryError when the registry cannot say."""
    try:
        registered_model(client, name)
        return True
    except UsageError:
        return False


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version number an alias points at now, or None when the model or the alias does not exist.
    Any other failure raises RegistryError: an unreadable champion is never "no champion"."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        code = getattr(exc, "error_code", None)
        if code not in (NOT_FOUND, "INVALID_PARAMETER_VALUE"):
            raise registry_error(exc, f"reading alias '{alias}' of model '{name}'", client=client) from None
        failure = exc
    try:  # confirm: the model exists without that alias (and not a malformed request)
        aliases = registered_model(client, name).aliases or {}
    except UsageError:
        return None
    if alias in aliases:
        raise registry_error(failure, f"reading alias '{alias}' of model '{name}'", client=client) from None
    return None


def resolve_version(client: MlflowClient, name: str, version: str | None) -> ModelVersion:
    """A version by number or alias (default: the challenger), as the concrete version it is now."""
    registered_model(client, name)
    ref = str(version or CHALLENGER)
    if ref.isdigit():
        return model_version(client, name, ref)
    number = alias_version(client, name, ref)
    if number is None:
        raise UsageError(
            f"model '{name}' has no version with alias '{ref}': pass version=<number> or set "
            f"the alias (a search sets '{CHALLENGER}')"
        )
    return model_version(client, name, number)


def model_version(client: MlflowClient, name: str, number: str) -> ModelVersion:
    try:
        return client.get_model_version(name, number)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(f"model '{name}' has no version {number}") from None
        raise registry_error(exc, f"reading version {number} of model '{name}'", client=client) from None


def version_run(client: MlflowClient, mv: ModelVersion) -> Any:
    """The run that logged a version; a UsageError when it has none (e.g. registered from a path)."""
    if not mv.run_id:
        raise UsageError(
            f"model '{mv.name}' version {mv.version} has no run: its training data and settings "
            f"are unknown, so pass data=<file with the target column> and target=<column>"
        )
    try:
        return client.get_run(mv.run_id)
    except Exception as exc:
        if is_not_found(exc):
            raise UsageError(
                f"model '{mv.name}' version {mv.version}: its run {mv.run_id} no longer exists; pass data= and target="
            ) from None
        raise registry_error(
            exc, f"reading the run of version {mv.version} of model '{mv.name}'", store="tracking store"
        ) from None


def run_config(client: MlflowClient, run: Any) -> TrainConfig:
    """The training settings of a run rebuilt from its params (``resolved.<key>`` wins; a search trial
    adds its sampled point to its search run's base settings)."""
    params, source = dict(run.data.params), run.data.tags.get(names.DATA_SOURCE)
    parent = run.data.tags.get(names.PARENT_RUN_ID)
    if run.data.tags.get(names.ROLE) == names.ROLE_TRIAL and parent:
        search = client.get_run(parent)
        params = {
            **search.data.params,
            **params,
            **{k: str(v) for k, v in json.loads(run.data.tags.get(names.TRIAL_PARAMS, "{}")).items()},
        }
        source = source or search.data.tags.get(names.DATA_SOURCE)
    values: dict[str, Any] = {k: v for k, v in params.items() if k in _TRAIN_FIELDS}
    data = values.get("data")
    if data and source and not Path(data).is_absolute() and Path(source).is_absolute() and Path(source).is_file():
        values["data"] = source  # relative to the folder the run ran in: the file it read, from anywhere
    values.update({k[9:]: v for k, v in params.items() if k.startswith("resolved.") and k[9:] in _TRAIN_FIELDS})
    kwargs = {k.split(".", 1)[1]: yaml.safe_load(v) for k, v in params.items() if k.startswith("model_kwargs.")}
    if kwargs:
        values["model_kwargs"] = kwargs
    values.update(experiment=None, run_name=None, model_name=None, progress=False, tensorboard=False)
    return build_config(values)


# ------------------------------------------------------------------------------------------ identity

UNKNOWN = object()


@dataclass(frozen=True)
class Identity:
    """What a version predicts from what: compared before a version may replace the champion."""

    task: Any = UNKNOWN  # classification | regression | segmentation
    target: Any = UNKNOWN  # the target column (None for a built-in data set)
    features: Any = UNKNOWN  # input column names (a sorted tuple), or the tensor input spec as JSON
    classes: Any = UNKNOWN  # a classifier's class labels as text (a sorted tuple)


def version_identity(client: MlflowClient, mv: ModelVersion, config: TrainConfig | None = None) -> Identity:
    """Task (run tag ``hyperflow.task``, or its search's for a trial), target (the run's settings) and
    input columns (the logged signature) of a version; what cannot be read stays unknown."""
    task: Any = UNKNOWN
    target: Any = UNKNOWN if config is None else config.target
    try:
        run = version_run(client, mv)
    except UsageError:  # no run, or it was deleted: only the signature can speak
        run = None
    if run is not None:
        task = run.data.tags.get(names.TASK) or UNKNOWN
        parent = run.data.tags.get(names.PARENT_RUN_ID)
        if task is UNKNOWN and parent:
            try:
                task = client.get_run(parent).data.tags.get(names.TASK) or UNKNOWN
            except Exception as exc:
                if not is_not_found(exc):
                    raise registry_error(
                        exc, f"reading the search run of version {mv.version}", store="tracking store"
                    ) from None
        if config is None:
            try:
                target = run_config(client, run).target
            except UsageError:
                pass
    return Identity(task, target, *_signature_io(mv))


def _signature_io(mv: ModelVersion) -> tuple[Any, Any]:
    """(input columns, class labels) of a version, by its logged signature; UNKNOWN where it does not say."""
    from mlflow.models import get_model_info

    try:
        info = get_model_info(f"models:/{mv.name}/{mv.version}")
    except Exception as exc:
        if is_not_found(exc) or isinstance(exc, (OSError, FileNotFoundError)):
            return UNKNOWN, UNKNOWN
        raise registry_error(exc, f"reading the signature of version {mv.version} of model '{mv.name}'") from None
    signature = info.signature
    inputs = signature.inputs if signature is not None else None
    if inputs is None:
        features = UNKNOWN
    elif inputs.is_tensor_spec() or not inputs.has_input_names():
        features = inputs.to_json()
    else:
        features = tuple(sorted(inputs.input_names()))
    outputs = signature.outputs if signature is not None else None
    names_out = outputs.input_names() if outputs is not None and outputs.has_input_names() else []
    prefix = names.PROBABILITY_PREFIX
    classes = tuple(sorted(n[len(prefix) :] for n in names_out if n.startswith(prefix))) or UNKNOWN
    return features, classes


def move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    try:
        client.set_registered_model_alias(name, alias, version)
    except Exception as exc:
        raise registry_error(
            exc, f"moving alias '{alias}' of model '{name}' to version {version}", client=client
        ) from None


# ------------------------------------------------------------------------------------------ writes


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


def model_tag(client: MlflowClient, name: str, key: str) -> str | None:
    """A registered model's tag (UsageError when there is no such model, RegistryError when unreadable)."""
    return registered_model(client, name).tags.get(key)


def set_model_tag(client: MlflowClient, name: str, key: str, value: str) -> None:
    client.set_registered_model_tag(name, key, value)


def delete_model_tag(client: MlflowClient, name: str, key: str) -> None:
    client.delete_registered_model_tag(name, key)


def run_status(client: MlflowClient, run_id: str) -> str:
    """RUNNING, FINISHED, FAILED or KILLED; MLflow's error as it is (``is_not_found`` tells a gone run)."""
    return client.get_run(run_id).info.status


def nested_runs(client: MlflowClient, run_id: str) -> list[Any]:
    """Every run nested under run ``run_id`` at any depth (children, their children, ...; tag
    ``mlflow.parentRunId``), parents before their children: the runs of its experiment that started no
    earlier than it and have a parent, read page by page and walked as a tree."""
    run = client.get_run(run_id)
    query = f"attributes.start_time >= {run.info.start_time} and tags.`{names.PARENT_RUN_ID}` LIKE '%'"
    children: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([run.info.experiment_id], query, max_results=1000, page_token=token)
        for r in page:
            children.setdefault(r.data.tags.get(names.PARENT_RUN_ID), []).append(r)
        token = page.token
        if not token:
            break
    found: list[Any] = []
    parents, seen = [run_id], {run_id}
    while parents:
        level = [r for p in parents for r in children.get(p, []) if r.info.run_id not in seen]
        seen.update(r.info.run_id for r in level)
        found += level
        parents = [r.info.run_id for r in level]
    return found
