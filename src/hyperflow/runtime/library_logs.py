"""What the libraries below hyperflow (MLflow, SQLAlchemy, urllib3, ...) log while a command runs: one line
per record, without tracebacks, and never a password. A failing store made MLflow log a traceback per failed
database call (~180 lines before hyperflow's own one line); the command's one line says what failed, and
``HYPERFLOW_VERBOSE=1`` shows the libraries' records in full (tracebacks included) when the details matter.

Installed once, by the command line's start-up, as the record factory: it holds for loggers and handlers
that are configured later (MLflow sets up its own handler when it is imported).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

from hyperflow.errors import without_credentials

VERBOSE = "HYPERFLOW_VERBOSE"  # 1: the libraries' log records in full, tracebacks included
# Records of the libraries that say nothing a user of hyperflow acts on, hidden unless HYPERFLOW_VERBOSE=1:
# (logger, start of the message). Extra columns are hyperflow's to drop (a file's target, ids, a split column).
NOISE = (("mlflow.models.utils", "Found extra inputs in the model input"),)


def verbose() -> bool:
    return os.environ.get(VERBOSE, "").strip().lower() in ("1", "true", "yes", "on")


def install(worker: bool = False) -> None:
    """Make every log record created from now on pass through :func:`shown` (once per process). ``worker``: the
    fork server of a command's processes (trial workers), whose failures reach the command, which
    reports them: there a library's record that carries a traceback is not shown at all (each process would add
    its line); the handlers that exist then (the imported libraries' own, Python's last resort) drop it."""
    if not verbose():  # MLflow's INFO records ("Creating initial MLflow database tables...") stay out of sight,
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # here and in the command's processes
        if "mlflow" in sys.modules:  # imported before (a notebook, a caller's own import): MLflow set its level then
            logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
        for name in {logger for logger, _ in NOISE}:
            if _not_noise not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_not_noise)
    if worker:
        loggers = [logging.root, *logging.root.manager.loggerDict.values()]
        for handler in {h for lg in loggers for h in getattr(lg, "handlers", [])} | {logging.lastResort}:
            if handler is not None:
                handler.addFilter(_no_library_traceback)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "hyperflow_shown", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.hyperflow_traceback = bool(record.exc_info and record.exc_info[0] is not None)
        return shown(record)

    factory.hyperflow_shown = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _not_noise(record: logging.LogRecord) -> bool:
    """A logger's filter: False for a record of :data:`NOISE`."""
    message = str(record.msg)
    return not any(record.name == name and message.startswith(start) for name, start in NOISE)


def _no_library_traceback(record: logging.LogRecord) -> bool:
    """A handler's filter in the command's processes: False for a library's record that carried a traceback."""
    return not getattr(record, "hyperflow_traceback", False) or verbose() or record.name.split(".")[0] == "hyperflow"


def shown(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` as it may be shown: credentials cut out of its message and traceback; a library's record
    cut to its first line, without traceback or stack, unless ``HYPERFLOW_VERBOSE=1``."""
    try:
        message = record.getMessage()
    except Exception:  # a library's own formatting mistake: shown as logging would show its parts
        message = f"{record.msg} {record.args}"
    full = verbose() or record.name.split(".")[0] == "hyperflow"
    if not full:
        message = next((line.strip() for line in message.splitlines() if line.strip()), "")
        record.exc_info = record.exc_text = record.stack_info = None
    elif record.exc_info and record.exc_info[0] is not None:
        record.exc_text = without_credentials("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None  # the formatter shows exc_text, scrubbed, instead of formatting it again
    record.msg, record.args = without_credentials(message), ()
    return record
