"""Which failures are the store's and which the training's: the one module that knows MLflow's exception types
for that. A store fault (a database error, an unreachable or failing server, a file system refusing a write) is
not the calling code's: runs end KILLED (not FAILED) on it, and the CLI prints its one line. An error a model's
training raises is told apart from it: the one line that names it and where it was raised is tagged on the run,
so that the run ends FAILED and the CLI prints one line (exit 1) instead of a traceback. The exception types
and the one-line texts are in :mod:`hyperflow.errors`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hyperflow import names
from hyperflow.errors import StoreFailure, TrainingFailed, UsageError, one_line, without_credentials

STORE_ERROR_CODES = {
    "TEMPORARILY_UNAVAILABLE",
    "INTERNAL_ERROR",
    "REQUEST_LIMIT_EXCEEDED",
    "ENDPOINT_NOT_FOUND",
    "IO_ERROR",
    "DEADLINE_EXCEEDED",
    "SERVICE_UNDER_MAINTENANCE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "CUSTOMER_UNAUTHORIZED",
}


def failed_store(exc: BaseException) -> str:
    """What failed: ``"artifacts"`` (a file system or artifact server refused a write), ``"tracking"``, or
    a ``StoreFailure``'s own ``source``."""
    if isinstance(exc, StoreFailure) and exc.source:
        return exc.source
    return "artifacts" if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) else "tracking"


def is_store_error(exc: BaseException, os_errors: bool = True) -> bool:
    """Whether ``exc`` (or what caused it) is the tracking or artifact store failing — a database error, an
    unreachable or failing server, a file system refusing a write — rather than the code that called it.
    ``os_errors=False`` where the code also runs a user's model (training): there a plain ``OSError`` (a file
    it cannot read, a download it cannot make) is the model's, since the store's own failures come as database,
    HTTP or MLflow errors (artifact writes are wrapped where they are made)."""
    import sqlite3

    import requests
    from mlflow.exceptions import RestException

    try:
        from sqlalchemy.exc import DBAPIError, OperationalError

        db_errors: tuple[type, ...] = (DBAPIError, OperationalError, sqlite3.Error)
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        db_errors = (sqlite3.Error,)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (*db_errors, requests.RequestException, StoreFailure)):
            return True
        if os_errors and isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return True  # ConnectionError and TimeoutError included
        if isinstance(exc, RestException) and exc.error_code in STORE_ERROR_CODES:
            return True  # the server answered with an error of its own (a 5xx, unavailable, refused)
        if isinstance(exc, MlflowException) and exc.error_code in STORE_ERROR_CODES - {"INTERNAL_ERROR"}:
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # `from None` ends the chain
    return False


def schema_refusal(exc: BaseException) -> Exception | None:
    """MLflow's refusal of a database store whose schema revision is not its own (a server database, or a
    sqlite URI with options, which the start-up check does not read) as one line saying what to do (a
    UsageError), else None."""
    import re

    from hyperflow.tracking import new_store

    found = re.match(r"Detected out-of-date database schema \(found version (\w+)", str(exc))
    if found is None or type(exc).__module__.split(".")[0] != "mlflow":
        return None
    return new_store.revision_refusal(without_credentials(mlflow.get_tracking_uri()), found.group(1))


def store_error_text(exc: BaseException) -> str:
    """One line for a store failure: the deepest cause that says what the store did (``sqlite3.OperationalError:
    attempt to write a readonly database``, ``ConnectionRefusedError: [Errno 111] Connection refused``), not the
    wrapper's first line."""
    import sqlite3

    import requests

    if isinstance(exc, StoreFailure):
        return without_credentials(str(exc))  # already the one line, made where the store failed
    found, seen = exc, set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (sqlite3.Error, requests.RequestException, OSError)) or hasattr(current, "orig"):
            found = getattr(current, "orig", None) or current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return one_line(found)


def portable(exc: BaseException) -> BaseException:
    """``exc`` as it can travel to another process: a store failure as :class:`StoreFailure` (one line: its
    cause does not survive pickling), another error as it is if it pickles, else as a RuntimeError."""
    import pickle

    if is_store_error(exc):
        return StoreFailure(store_error_text(exc), failed_store(exc))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(one_line(exc))  # "Type: message", once


@contextmanager
def raised_in_training(what: str, also_tag: str | None = None) -> Iterator[None]:
    """An error the model's training raises (an ``OSError`` of its own included) becomes :class:`TrainingFailed`
    (store failures, MLflow refusals, bad settings and hyperflow's own one-line errors pass as they are); the
    active run, and run ``also_tag`` (e.g. its parent), are tagged with it."""
    try:
        yield
    except Exception as exc:
        ours = hasattr(exc, "exit_code") and type(exc).__module__.startswith("hyperflow.")  # e.g. ArtifactStoreError
        if ours or isinstance(exc, (UsageError, MlflowException)) or is_store_error(exc, os_errors=False):
            raise
        reason = f"{what} raised {one_line(exc)} (at {_where(exc)})"
        active = mlflow.active_run()
        for run_id in {active.info.run_id if active else None, also_tag} - {None}:
            MlflowClient().set_tag(run_id, names.FAILURE_REASON, reason[:5000])
        raise TrainingFailed(reason) from None


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc`` in code of the user's or hyperflow's (not in installed libraries),
    as ``file:line in function``: where to look first."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename and "/lib/python" not in f.filename]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
