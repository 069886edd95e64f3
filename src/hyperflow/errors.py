"""The exception types the command line turns into exit codes: ``UsageError`` (bad input: one line, exit 2)
and ``Terminated`` (SIGTERM, which ends runs KILLED and the command with 130, as Ctrl-C does)."""

from __future__ import annotations

import re


class UsageError(Exception):
    """Bad input from the user (config, data, names). The message says what is wrong and how to fix it."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler so that open runs end as KILLED, like on Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: stop what the main thread does, as Ctrl-C would."""
    raise Terminated(f"received signal {signum}")


_USERINFO = re.compile(r"(?<=://)[^\s/?#'\"<>@]*(?:@[^\s/?#'\"<>@]*)*@")


def without_credentials(text: str) -> str:
    """``text`` with the user name and password cut out of every URL in it (``http://alice:pw@host/x`` →
    ``http://host/x``): the one way a store's URI, or a library's message that quotes one (MLflow's "API
    request to http://alice:pw@host/... failed"), is shown, tagged or logged. Nothing else of the text
    changes: the URI is never taken apart and put back together (``sqlite:///mlflow.db`` keeps its three
    slashes)."""
    return _USERINFO.sub("", text) if "@" in text else text
