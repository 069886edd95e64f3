"""The exception types the command line turns into exit codes: ``UsageError`` (bad input: one line, exit 2)
and ``Terminated`` (SIGTERM, which ends runs KILLED and the command with 130, as Ctrl-C does)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (config, data, names). The message says what is wrong and how to fix it."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler so that open runs end as KILLED, like on Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: stop what the main thread does, as Ctrl-C would."""
    raise Terminated(f"received signal {signum}")
