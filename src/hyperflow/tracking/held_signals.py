"""Ctrl-C and SIGTERM held back while a model version is registered and its run ends, so that a version
never comes from a run that then ends KILLED, nor a command report KILLED for a run it finished.

The first signal is held (one line says so); a second one stops at once, as before. When the hold ends, a
held signal stops what the caller does next if a run is still open around it (a retrain's), and is dropped
when the command's work is done: the process then ends with the command's code (``runtime.process_exit``,
which takes the signals over once the command's last run has ended). Only the main thread receives
signals; elsewhere, and for a signal ignored before (a job started in the background ignores Ctrl-C),
nothing changes.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import mlflow

from hyperflow.errors import raise_terminated
from hyperflow.runtime import process_exit

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HeldSignals:
    """``hold()`` before the step that must not be cut short, ``release()`` once its run has ended."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.held: int | None = None
        self._previous: dict[int, Any] = {}

    def hold(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.held is not None:
            _stop(signum)  # a second signal: stop now
        self.held = signum
        print(f"hyperflow: {self.what}; stopping once that is done (again to stop now)", file=sys.stderr, flush=True)

    def release(self, *, failed: bool = False) -> None:
        """Handlers back as they were; a held signal stops the caller if a run is still open around it
        (not when an exception is already on its way: ``failed``)."""
        if process_exit.is_done():  # the command's last run has ended: its signals stay with process_exit
            self._previous = {}
            if self.held is not None and not failed:
                process_exit.note(self.held)
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        if self.held is not None and not failed and mlflow.active_run() is not None:
            _stop(self.held)


def _stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise_terminated(signum, None)
