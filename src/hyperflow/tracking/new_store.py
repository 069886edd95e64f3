"""The tracking store before a command uses it: :func:`check` refuses, in one line, one that cannot be used
(a scheme, driver or schema MLflow cannot use, a path in a folder that does not exist, a store to read that is
not there), and :func:`make_if_missing` makes a new sqlite store as a copy of an empty one, instead of MLflow's schema
migrations.

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
import re
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import mlflow

from hyperflow.errors import UsageError, without_credentials

log = logging.getLogger(__name__)
SQLITE_MAGIC = b"SQLite format 3\x00"
STORE_EXAMPLES = (
    "sqlite:///path/mlflow.db, http(s)://host:port (an mlflow server), postgresql://, mysql://, "
    "mssql://, databricks, or file:///folder with MLFLOW_ALLOW_FILE_STORE=true"
)


def check(reads_only: bool = False, uri: str | None = None) -> None:
    """The tracking store a command is about to use, checked in a fraction of a second before anything runs
    (one-line UsageErrors, exit 2): a scheme MLflow has no store for; a sqlite file that is a folder or whose
    folder does not exist (MLflow would make the folders and a new, empty store, or retry for two minutes);
    a sqlite store whose schema revision this MLflow does not know or is older than its own. ``reads_only``
    (promote, retrain, predict of a registered model): a sqlite file that does not exist yet is refused too,
    rather than made empty to find nothing in it."""
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    uri = uri or mlflow.get_tracking_uri()
    shown = without_credentials(uri)
    registry_name = "MLFLOW_REGISTRY_URI" if os.environ.get("MLFLOW_REGISTRY_URI") else "the model registry's URI"
    for name, kind, registry, address in (
        ("MLFLOW_TRACKING_URI", "tracking", _tracking_store_registry, uri),
        (registry_name, "model registry", _get_store_registry(), mlflow.get_registry_uri()),
    ):
        try:
            registry.get_store_builder(address)
        except UnsupportedModelRegistryStoreURIException:
            raise UsageError(
                f"{name} '{without_credentials(address)}': MLflow {mlflow.__version__} has no {kind} "
                f"store for scheme '{urlsplit(address).scheme}': set it to {STORE_EXAMPLES}"
            ) from None
    if uri not in ("databricks", "databricks-uc", "uc") and urlsplit(uri).scheme in ("", "file"):
        _check_file_store(uri, shown, reads_only)
    _check_driver(uri, shown)
    _check_databricks(uri, shown)
    path = sqlite_path(uri)
    if path is None:
        return
    if path.is_dir():
        raise UsageError(
            f"tracking URI '{shown}': '{path}' is a folder, not a sqlite file: name a file in it, "
            f"e.g. sqlite:///{(path / 'mlflow.db').absolute()}"
        )
    _check_place(path, shown, reads_only)
    if path.exists():
        _check_revision(path, shown)


def _check_databricks(uri: str, shown: str) -> None:
    """A Databricks URI (``databricks``, ``databricks://profile``, ``databricks-uc``) with no credentials to be
    found: no ``DATABRICKS_*`` variable (host, token, client id, runtime...) and no config file. MLflow reads
    them only at the first request and fails there with a traceback. Decided from the environment and the
    file system alone: asking Databricks' SDK may wait a minute on a host that does not answer."""
    if urlsplit(uri).scheme not in ("databricks", "databricks-uc") and uri not in ("databricks", "databricks-uc"):
        return
    if any(value.strip() for key, value in os.environ.items() if key.startswith("DATABRICKS_")):
        return
    if Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg").expanduser().exists():
        return
    raise UsageError(
        f"tracking URI '{shown}': no Databricks credentials are configured for it: set "
        f"DATABRICKS_HOST and DATABRICKS_TOKEN, log in with 'databricks auth login', or pick "
        f"another store with MLFLOW_TRACKING_URI"
    )


def _check_driver(uri: str, shown: str) -> None:
    """A database server's URI (postgresql://, mysql://, mssql://): the Python driver SQLAlchemy needs for it
    must be installed."""
    if urlsplit(uri).scheme.split("+")[0] not in ("postgresql", "mysql", "mssql"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise UsageError(
            f"tracking URI '{shown}': SQLAlchemy has no driver '{urlsplit(uri).scheme}': name one "
            f"it has, e.g. postgresql://, mysql+pymysql://, mssql+pyodbc://"
        ) from None
    except ImportError as exc:
        raise UsageError(
            f"tracking URI '{shown}': its database driver is not installed (no module "
            f"'{exc.name}'): install the package that provides it (e.g. psycopg[binary], "
            f"mysqlclient, pyodbc) in this environment"
        ) from None
    except Exception:  # a URI SQLAlchemy cannot read: left to MLflow and the store's own line
        return


def _check_place(path: Path, shown: str, reads_only: bool) -> None:
    """A store's file or folder ``path``: its folder must exist (no store is made for a mistyped URI), and for
    a command that only reads, the store itself."""
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(
            f"tracking URI '{shown}': '{path.parent}' {what} (a mistyped URI?): create the folder, "
            f"or fix MLFLOW_TRACKING_URI; nothing was created"
        )
    if reads_only and not path.exists():
        raise UsageError(
            f"there is no tracking store at '{path}' ({shown}): nothing to read there; set "
            f"MLFLOW_TRACKING_URI to the store your runs and models are in"
        )


def _check_file_store(uri: str, shown: str, reads_only: bool) -> None:
    """A folder as the store (MLflow's file store, also what a URI without a scheme is: ``http//host``), which
    MLflow 3 refuses unless ``MLFLOW_ALLOW_FILE_STORE`` is true; then as for a sqlite file."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    if not MLFLOW_ALLOW_FILE_STORE.get():
        raise UsageError(
            f"tracking URI '{shown}' names a folder (MLflow's file store), which MLflow "
            f"{mlflow.__version__} uses only with MLFLOW_ALLOW_FILE_STORE=true: set "
            f"MLFLOW_TRACKING_URI to {STORE_EXAMPLES}"
        )
    parts = urlsplit(uri)
    _check_place(Path(parts.path if parts.scheme else uri).absolute(), shown, reads_only)


def _check_revision(path: Path, shown: str) -> None:
    """Refuse a sqlite store whose schema revision is not this MLflow's newest: unknown (a newer MLflow made
    it) or older (``mlflow db upgrade``). Anything unreadable is left to MLflow and the store's own line."""
    try:
        if not _looks_like_sqlite(path):
            return
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except (OSError, sqlite3.Error):
        return
    refusal = revision_refusal(shown, row[0] if row else None)
    if refusal is not None:
        raise refusal


def revision_refusal(shown: str, current: str | None) -> UsageError | None:
    """What to do with a store of schema revision ``current`` (None: not known) when it is not this MLflow's
    newest: use the newer MLflow that made it, or upgrade it (``mlflow db upgrade``)."""
    known, head = schema_revisions()
    if current is None or head is None or current == head:
        return None
    if current not in known:
        return UsageError(
            f"the tracking store {shown} has schema revision {current}, unknown to MLflow "
            f"{mlflow.__version__} (a newer MLflow made it): use that MLflow version (or newer) "
            f"with this store, or another store"
        )
    return UsageError(
        f"the tracking store {shown} has an older schema (revision {current}; MLflow "
        f"{mlflow.__version__} needs {head}): back it up, then run 'mlflow db upgrade {shown}'"
    )


def schema_revisions() -> tuple[set[str], str | None]:
    """Every schema revision this MLflow knows and its newest (None when that cannot be told), read from its
    migration files' names and ``down_revision`` lines: milliseconds, where alembic's own reading takes 0.5 s."""
    folder = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    known, downs = set(), set()
    for file in folder.glob("*.py"):
        text = file.read_text(errors="replace")
        revision = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        if revision:
            known.add(revision.group(1))
        if down:
            downs.add(down.group(1))
    heads = known - downs
    return known, next(iter(heads)) if len(heads) == 1 else None


def make_if_missing(uri: str | None = None) -> None:
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
