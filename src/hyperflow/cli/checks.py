"""The checks a command makes before it works, cheapest first: the files it reads (``data=``, ``target=``,
``task=``, a model function, a search's space file; no torch, no MLflow), its tracking store, the experiment
its runs go to. Each mistake is one line and exit 2, in seconds."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Collection
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

from hyperflow.cli.parsing import Invocation
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.errors import UsageError, without_credentials

RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # what MLflow takes for a run id (others: its own message)


def check_inputs(inv: Invocation) -> None:
    """Every mistake that needs only a file, the space or the store is reported before torch is imported and
    before a worker starts (seconds): ``data=``, ``target=``, ``task=``, ``model=package.module:function``, and
    for a search its space file and the run ``resume=`` names (read from the store: MLflow, not torch)."""
    if inv.command not in ("train", "lr-find", "search") or inv.train is None:
        return
    base = inv.train
    if inv.search is not None:
        search, base = check_search(inv.search, base, inv.given)
        if search.objective:  # the user's function loads its own data
            from hyperflow.workflows.search_objective import import_objective

            import_objective(search.objective)
            return
    from hyperflow.core.loading import precheck_source

    precheck_source(base.data, base.target, base.task)
    if ":" in base.model:
        from hyperflow.core.factory import import_factory

        import_factory(base.model)


def check_search(search: SearchConfig, base: TrainConfig, given: Collection[str]) -> tuple[SearchConfig, TrainConfig]:
    """The run ``resume=`` names (and the settings it keeps) and the space file, before anything heavy; the
    search and training settings the search will run with."""
    from hyperflow.engine import space, space_points
    from hyperflow.engine.grid import check_grid

    if search.resume:
        from hyperflow.workflows import search_resume as resume

        search, base, _ = resume.recorded_settings(resume.search_run(search.resume), search, base, given)
    if search.objective:  # the space names the function's own parameters
        if search.space:
            spec = space.load_space(search.space, free=True)
            if search.strategy == "grid":
                check_grid(spec)
        return search, base
    space.check_auto_lrs(base)
    if search.space:
        space_points.check_space_file(search.space, base, grid=search.strategy == "grid")
    return search, base


def check_start(inv: Invocation) -> None:
    """Every check made before a command works, cheapest first: the files it reads (no MLflow, no torch), its
    tracking store, then the experiment its runs go to; a search's ``resume=`` run is read from the store, so
    there the store comes first."""
    store_first = inv.search is not None and bool(inv.search.resume)
    if store_first:
        refuse_unknown_run(str(inv.search.resume))
        check_store(inv)
    check_inputs(inv)
    if not store_first:
        check_store(inv)
    if inv.command != "predict":
        check_experiment(inv.experiment)


def refuse_unknown_run(run_id: str) -> None:
    """``resume=`` an id that the sqlite store ``MLFLOW_TRACKING_URI`` names does not hold, refused from the file
    (read-only, Python's sqlite3: MLflow's ``runs`` table) before MLflow is imported, which costs ~2 CPU-s; any
    other store or answer (a run found, no such file or table) is left to the checks through MLflow."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or parts.netloc or parts.query or not RUN_ID.fullmatch(run_id):
        return
    path = Path(parts.path[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if parts.path in ("", "/", "/:memory:") or not path.is_file():
        return
    try:
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    except sqlite3.Error:
        return
    if found is None:
        raise UsageError(f"resume={run_id}: no such run in {without_credentials(uri)}")


def check_store(inv: Invocation) -> None:
    """The start-up checks of the tracking store, together and before anything reads it (seconds, no torch):
    its URI (a scheme MLflow has no store for, a sqlite file that is a folder or in a folder that does not
    exist, a schema revision this MLflow does not know or has moved past; promote, retrain and predict of a
    models:/ or runs:/ URI only read, so a store that does not exist yet is refused too). One line, exit 2."""
    model = str(inv.predict.get("model", ""))
    if inv.command == "predict" and not model.startswith(("models:/", "runs:/")):
        return  # a model folder or file URI: no store is read
    from hyperflow.tracking import new_store

    new_store.check(reads_only=inv.command in ("promote", "retrain", "predict"))


def check_experiment(name: str | None) -> None:
    """Refuse a deleted experiment, or an ``MLFLOW_EXPERIMENT_ID`` that names none, before any run is created
    (MLflow would raise deep inside)."""
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: the run, and its experiment, exist already
        return
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    if not (name or experiment_id):
        return
    from hyperflow import tracking
    from hyperflow.tracking import new_store

    new_store.make_if_missing()  # a store to be made is made from the cached empty one, as the command would
    if not name:
        tracking.check_experiment_id(experiment_id)
        return

    try:
        state = tracking.experiment_state(name)
    except Exception as exc:
        if tracking.is_store_error(exc, os_errors=False):
            raise  # the one line and the command's code for a store that fails (_store_refusal)
        raise tracking.registry_error(exc, f"reading experiment '{name}'", store="tracking store") from None
    if state is not None and state[0] == "deleted":
        raise tracking.deleted_experiment(name, state[1])
