"""A new sqlite tracking store as a copy of an empty one, instead of MLflow's schema migrations.

MLflow makes a new sqlite store by creating its first tables and then running every schema migration
since (~3 s on 2 cores, ~60 % of the first command in a folder). Before any run, that file is the same for
every store of one MLflow version except for one row: the default experiment, whose artifact location
depends on where the store is. So MLflow makes one empty store, once, in a private folder; without that row
it goes into the user's cache (``$XDG_CACHE_HOME/hyperflow``, named by MLflow's version). Every new store
starts as a copy of it, linked into place whole, and MLflow adds the default experiment on opening it, as it
does for any store that lacks one. MLflow still checks the schema revision when it opens the copy. Other
URIs, existing files and any failure here (no cache folder, no hard links) leave the store to MLflow as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import mlflow

log = logging.getLogger(__name__)
SQLITE_MAGIC = b"SQLite format 3\x00"


def prepare(uri: str | None = None) -> None:
    """Make the sqlite store of ``uri`` (default: the tracking URI) if its file does not exist yet."""
    uri = uri or mlflow.get_tracking_uri()
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    template = template_path()
    try:
        if not _looks_like_sqlite(template):
            _make_template(template)
        _copy_new(template, path)
    except (OSError, sqlite3.Error) as exc:  # a cache that cannot be written or read: MLflow's way stands
        log.debug("new store template not used: %s", exc)


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for other stores and in-memory databases)."""
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or parts.netloc or parts.query or parts.path in ("", "/", "/:memory:"):
        return None
    return Path(parts.path[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db


def template_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hyperflow"
    return cache / f"mlflow-{mlflow.__version__}-empty-store.db"


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _copy_new(template: Path, path: Path) -> None:
    """Copy beside the target, then hard-link it into place: never a half-copied store, and a store another
    process made in the meantime is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        shutil.copyfile(template, partial)
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
    finally:
        partial.unlink(missing_ok=True)


def _make_template(template: Path) -> None:
    """An empty store made by MLflow (its tables and every migration) in a private folder, without the
    default experiment, then moved into the cache at once. MLflow never migrates a file another process can
    see: two commands started together in a new folder would otherwise migrate one file twice and fail
    ("duplicate column name")."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{template.name}.", dir=template.parent) as folder:
        made = Path(folder) / "empty.db"
        SqlAlchemyStore(f"sqlite:///{made}", default_artifact_root=folder).engine.dispose()
        with closing(sqlite3.connect(made)) as db:
            db.execute("DELETE FROM experiments")  # MLflow adds the default experiment to each copy it opens
            db.commit()
        os.replace(made, template)
