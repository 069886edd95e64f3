"""Waiting on real processes and stores without fixed sleeps: poll a condition until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05) -> Any:
    """The first truthy value of ``predicate()``, polled every ``every`` seconds; an AssertionError naming
    ``what`` once ``timeout`` seconds have passed without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
