"""A command's end as a process: output whose reader went away (``| head``) does not break the work, and a
signal once the command's work is done ends the process with the command's code. Used by the command line
when it is the process's entry (the ``hyperflow`` script, ``steps/*.py``), never by library callers.

"Done" starts when the command's last run has ended (:func:`work_done`, called by ``tracking.tracked_run``):
from then on Ctrl-C and SIGTERM are noted, not raised, while the command prints what it did and returns (a
second one ends the process at once, exit 130); after it has returned one ends the process with its code
(:func:`exit_on_signals`); and at the interpreter's teardown, after every atexit handler, they are ignored:
Python puts the default action back then, and a signal would kill the process (exit -2, no line) while it
frees its modules.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

from hyperflow.errors import without_credentials


class TolerantStream:
    """stdout or stderr whose reader may go away (``| head``): what is written after that is dropped instead of
    raising BrokenPipeError into the work, which would end its run half done (a model registered, the run
    KILLED); the exit code then says 141, as for a tool killed by SIGPIPE. What is written passes without
    credentials: MLflow prints "View run ... at: http://user:password@host/..." for a URI that carries them."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.lost = stream, False

    @classmethod
    def wrap(cls, name: str) -> TolerantStream:
        tolerant = cls(getattr(sys, name))
        setattr(sys, name, tolerant)
        return tolerant

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self._stream.write(without_credentials(text))
            except BrokenPipeError:
                self.lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.lose()

    def lose(self) -> None:
        """The reader is gone: the descriptor now leads to /dev/null (nothing raises at exit either)."""
        self.lost = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured by a test)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


SIGNALS = (signal.SIGINT, signal.SIGTERM)
_process: dict[str, Any] = {"owner": None, "done": False}  # owner: the pid of the command line's process
_noted: list[int] = []  # the signals that came once the work was done


def own_process() -> None:
    """The command line is this process's entry: :func:`work_done` applies, and signals are ignored at the
    teardown (registered before MLflow and torch are imported, this handler runs after theirs)."""
    if _process["owner"] is None:
        _process["owner"] = os.getpid()
        atexit.register(_set_handlers, signal.SIG_IGN)


def work_done() -> None:
    """The command's last run has ended: from now on Ctrl-C and SIGTERM are noted and end the process with the
    command's code once it returns; a second one ends it at once (130). Nothing changes for library callers,
    outside the main thread, or in a process forked from the command's (a worker)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if _process["owner"] == os.getpid() and not _process["done"] and main_thread:
        _process["done"] = True
        _set_handlers(_note)


def is_done() -> bool:
    """Whether :func:`work_done` took the signals over (a caller must not put its own handlers back)."""
    return _process["done"] and _process["owner"] == os.getpid()


def note(signum: int) -> None:
    """A signal that came once the work was done (also one held until then, see ``held_signals``)."""
    _note(signum, None)


def _note(signum: int, frame: object) -> None:
    if _noted:
        _leave(130)
    _noted.append(signum)


def _set_handlers(handler: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, handler)


def _leave(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def exit_on_signals(code: int) -> None:
    """The command returned ``code``: a signal noted since its work was done ends the process now, and from now
    on Ctrl-C or SIGTERM end it with ``code`` (the exit: MLflow's and torch's atexit handlers, the
    interpreter's teardown), instead of a KeyboardInterrupt traceback or a death by signal."""
    if _noted:
        _leave(code)
    _set_handlers(lambda signum, frame: _leave(code))
