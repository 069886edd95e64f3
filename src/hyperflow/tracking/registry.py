"""The model registry read the MLflow way: which version is meant (by number or alias), the run behind a
version and its training settings, registered models' tags, runs' states. Fails closed: only "not found" means
absent; any other store failure is a RegistryError (:func:`registry_error`, also for the writes of
:mod:`hyperflow.tracking.registry_writes`).

Versions are always resolved to a number before anything else happens, so a promotion moves the alias
to the version it scored, never to "the latest". Scoring and the gate live in ``hyperflow.workflows``.
"""

from __future__ import annotations

import json
from dataclasses import fields
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


def model_tag(client: MlflowClient, name: str, key: str) -> str | None:
    """A registered model's tag (UsageError when there is no such model, RegistryError when unreadable)."""
    return registered_model(client, name).tags.get(key)


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
