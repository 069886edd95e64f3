"""Store faults: whether a failure is the tracking or artifact store's (a database error, an unreachable
or failing server, a file system refusing a write) rather than the calling code's, and how to say it in
one line. Runs end KILLED (not FAILED) on such faults, and the CLI prints the one line.
"""

from __future__ import annotations

from hyperflow.errors import without_credentials

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


class StoreFailure(OSError):
    """A store failure met in another process (a worker's trial, the tracking sidecar): its cause does not
    survive pickling, so the one line that says what the store did travels as the message, and ``source``
    says which store failed ("" when the message says it: the reports name the tracking or artifact store)."""

    def __init__(self, text: str, source: str = "") -> None:
        super().__init__(text)
        self.source = source


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
    from mlflow.exceptions import MlflowException, RestException

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

    import mlflow

    from hyperflow.tracking import new_store

    found = re.match(r"Detected out-of-date database schema \(found version (\w+)", str(exc))
    if found is None or type(exc).__module__.split(".")[0] != "mlflow":
        return None
    return new_store.schema_refusal(without_credentials(mlflow.get_tracking_uri()), found.group(1))


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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters, without credentials: for a one-line
    error report."""
    text = without_credentials(next((line.strip() for line in str(exc).splitlines() if line.strip()), ""))
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        return RuntimeError(f"{type(exc).__name__}: {one_line(exc)}")
