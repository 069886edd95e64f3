"""hyperflow's exception types and how an error is told in one line.

The types the command line turns into exit codes (docs/exit-codes.md): 1 the job failed (``TrainingFailed``,
``ArtifactStoreError``, ``SearchFailed``), 2 bad input or a registry that cannot answer (``UsageError``,
``RegistryError``), 4 locked (``LeaseHeld``), 5 the champion moved during a promotion (``ChampionConflict``),
130 ``Terminated`` (SIGTERM, which ends runs KILLED, as Ctrl-C does); ``StoreFailure`` carries a store's
failure between processes. The text helpers: ``without_credentials`` (the one function that cuts user names
and passwords out of URLs) and the one-line forms of an error (``one_line``, ``first_line``,
``whole_message``). Which failures are the store's is decided in :mod:`hyperflow.tracking.faults`, the module
that knows MLflow's exception types.
"""

from __future__ import annotations

import re
from typing import Any


class UsageError(Exception):
    """Bad input from the user (config, data, names). The message says what is wrong and how to fix it."""

    exit_code = 2


class ArtifactStoreUnusable(UsageError):
    """The artifact location cannot be written, found before any run was created (exit 2, no run left)."""


class RegistryError(RuntimeError):
    """The registry (or tracking store) failed while we needed an answer; nothing was moved. Exit code 2."""

    exit_code = 2


class TrainingFailed(RuntimeError):
    """Training or the range test raised (torch refusing a shape or a dtype, a user's model): one line naming
    the error and where it was raised; the run ends FAILED with it as ``hyperflow.failure_reason``."""

    exit_code = 1


class ArtifactStoreError(RuntimeError):
    """The artifact store refused a write during a run (a full disk, a permission, a file where a folder must
    be, a server's artifact endpoint answering with an error). The run ends FAILED (tag
    ``hyperflow.failure_reason``); the CLI prints the message on one line and exits 1. Raised without its
    cause in the exception chain, so that the run is not taken for one the store cut short (KILLED): the
    tracking store still answers; the original error is kept as ``cause``."""

    exit_code = 1

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    def __reduce__(self) -> tuple:  # travels between processes as its message
        return ArtifactStoreError, (str(self),)


class SearchFailed(Exception):
    """The search could not finish its job (the store failed, the model could not be logged): the message is
    one line that says what failed, what is kept and the command that continues. The CLI prints it, exit 1."""

    exit_code = 1


class LeaseHeld(RuntimeError):
    """Another job holds the lease (exit code 4); ``holder`` says who."""

    exit_code = 4

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(message)


class ChampionConflict(RuntimeError):
    """The champion kept moving during the promotion (nothing was moved), or another promotion moved it right
    after this one did (a lost race: the other one's version is the champion). Exit code 5."""

    exit_code = 5


class StoreFailure(OSError):
    """A store failure met in another process (a worker's trial): its cause does not
    survive pickling, so the one line that says what the store did travels as the message, and ``source``
    says which store failed ("" when the message says it: the reports name the tracking or artifact store)."""

    def __init__(self, text: str, source: str = "") -> None:
        super().__init__(text)
        self.source = source


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler so that open runs end as KILLED, like on Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: stop what the main thread does, as Ctrl-C would."""
    raise Terminated(f"received signal {signum}")


# ------------------------------------------------------------------------------------------ error text

_USERINFO = re.compile(r"(?<=://)[^\s/?#'\"<>@]*(?:@[^\s/?#'\"<>@]*)*@")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def without_credentials(text: str) -> str:
    """``text`` with the user name and password cut out of every URL in it (``http://alice:pw@host/x`` →
    ``http://host/x``): the one way a store's URI, or a library's message that quotes one (MLflow's "API
    request to http://alice:pw@host/... failed"), is shown, tagged or logged. Nothing else of the text
    changes: the URI is never taken apart and put back together (``sqlite:///mlflow.db`` keeps its three
    slashes)."""
    return _USERINFO.sub("", text) if "@" in text else text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message_start(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, without credentials ("" when it has none)."""
    return without_credentials(next((line.strip() for line in str(exc).splitlines() if line.strip()), ""))


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of ``exc``'s message (its type's name when the message is empty), at most
    ``limit`` characters, without credentials: a library's error quoted inside a message of ours."""
    return _cut(_message_start(exc) or type(exc).__name__, limit)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (:func:`first_line` named by its type), at most ``limit``
    characters, without credentials: for a one-line error report."""
    text = _message_start(exc)
    return _cut(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, limit)


def whole_message(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s whole message with its lines and spaces run together into one line (its type's name when
    empty), a refused connection cut to its errno line (not urllib3's whole repr), at most ``limit``
    characters and an ellipsis, without credentials: a store's failure quoted inside a message of ours."""
    text = without_credentials(" ".join(str(exc).split())) or type(exc).__name__
    errno = _ERRNO.search(text)
    if errno and " failed with exception " in text:
        text = f"{text.split(' failed with exception ')[0]} failed: {errno.group(0).strip()}"
    return text if len(text) <= limit else text[:limit] + "…"
