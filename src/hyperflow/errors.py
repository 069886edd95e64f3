"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (config, data, names). The message says what is wrong and how to fix it."""

    exit_code = 2
