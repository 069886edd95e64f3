"""How a command's end becomes one line and an exit code: an interrupt (130, and how it left the command's runs),
a store that refused or failed (2, or the command's code)."""

from __future__ import annotations

import sys
from typing import Any


def tracking_module() -> Any:
    """hyperflow.tracking where the command imported it (it reached a store), else None: MLflow's import is not
    paid to learn that no run was started."""
    return sys.modules.get("hyperflow.tracking")


def runs_ended() -> str:
    """How an interrupt left the command's runs: ended KILLED, unless the store refused to end one."""
    tracking = tracking_module()
    return tracking.interrupted_runs() if tracking is not None else "its runs were ended as KILLED"


# A store that fails: 1 (the job failed), as for a search; promote and retrain say 2, as when their registry
# cannot be read (docs/exit-codes.md's table). The line names the store and what was written.
STORE_FAILURE_CODES = {"promote": 2, "retrain": 2}


def store_refusal(exc: BaseException, command: str) -> tuple[str, int] | None:
    """The one line and exit code for a store that refused or failed under the command: a schema revision to
    upgrade (2), or a store's failure (:data:`STORE_FAILURE_CODES`); None when ``exc`` is no store's."""
    tracking = tracking_module()
    if tracking is None:
        return None
    refusal = tracking.schema_refusal(exc)
    if refusal:
        return str(refusal), 2
    if tracking.is_store_error(exc, os_errors=False):
        return tracking.command_store_failure(exc), STORE_FAILURE_CODES.get(command, 1)
    return None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the one line to print (e.g. how to resume)."""
