"""How runs end on the way out — FINISHED, FAILED on an exception, KILLED on Ctrl-C, SIGTERM or a store
failure — and what the command's runs became, for the one line that ends an interrupted or failed command."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hyperflow.errors import one_line
from hyperflow.tracking.experiments import tracking_uri
from hyperflow.tracking.faults import is_store_error, store_error_text

log = logging.getLogger(__name__)


@contextmanager
def ended_as(end: Any) -> Iterator[None]:
    """Calls ``end(status)`` on the way out: FINISHED, KILLED on Ctrl-C or SIGTERM, FAILED on an exception."""
    status = "FINISHED"
    try:
        yield
    except KeyboardInterrupt as exc:
        status = "KILLED"
        _let_go(exc)
        raise
    except BaseException as exc:
        status = "KILLED" if is_store_error(exc) else "FAILED"  # the store failed, not the run's code
        raise
    finally:
        if status == "FINISHED":
            end(status)
            COMMAND_RUNS.ended.append(status)
        else:
            try:
                end(status)
                COMMAND_RUNS.ended.append(status)
            except Exception as exc:  # e.g. the store is down: the exception in flight is the one to report
                log.debug("could not end a run as %s: %s", status, exc)
                COMMAND_RUNS.unended.append(f"{status}: {one_line(exc, 200)}")


@dataclass
class _CommandRuns:
    """The runs of the command under way, for the one line that ends it (:func:`forget_runs` between commands)."""

    started: list[str] = field(default_factory=list)  # the ids of the runs started (or reopened), first first
    ended: list[str] = field(default_factory=list)  # the statuses runs were ended with
    unended: list[str] = field(default_factory=list)  # why runs could not be ended after an interrupt or a failure


COMMAND_RUNS = _CommandRuns()


def forget_runs() -> None:
    """The command has returned: the next one starts with no runs of its own."""
    COMMAND_RUNS.started.clear()
    COMMAND_RUNS.ended.clear()
    COMMAND_RUNS.unended.clear()


def interrupted_runs() -> str:
    """How an interrupt left the command's runs: ended KILLED, unless the store refused to end one."""
    if COMMAND_RUNS.unended:
        return f"a run could not be ended ({COMMAND_RUNS.unended[-1]}) and stays RUNNING (a resume ends it)"
    if (
        COMMAND_RUNS.ended and "KILLED" not in COMMAND_RUNS.ended
    ):  # the signal came after the work: nothing was cut short
        return f"its runs had ended ({', '.join(sorted(set(COMMAND_RUNS.ended)))}) and stay as they are"
    return "its runs were ended as KILLED"


def command_store_failure(exc: BaseException) -> str:
    """The one line for a tracking store that failed under a command: the store (without credentials), what
    it did, and what was written: nothing, or the command's runs and how they were left."""
    text = f"the tracking store {tracking_uri()} failed: {store_error_text(exc)}"
    started, unended = COMMAND_RUNS.started, COMMAND_RUNS.unended
    if not started:
        return f"{text}; nothing was written: run the command again once the store works"
    runs = f"run{'s' if len(started) > 1 else ''} {', '.join(started)}"
    if unended:
        return f"{text}; {runs} could not be ended and stay{'' if len(started) > 1 else 's'} RUNNING ({unended[-1]})"
    return f"{text}; {runs} ended {'/'.join(sorted(set(COMMAND_RUNS.ended)))} with what reached the store"


def _let_go(interrupt: BaseException) -> None:
    """Drop what the interrupted code held. Ctrl-C inside a database write leaves its cursor in the frames of
    the traceback, and sqlite keeps the write lock until the statement is gone (closing the connection waits
    for it), so ending the run would wait out the 20 s busy timeout and fail. The frames' local variables are
    cleared (the traceback itself stays), then the reference cycles they were in are collected."""
    import gc
    import traceback

    traceback.clear_frames(interrupt.__traceback__)
    gc.collect()
