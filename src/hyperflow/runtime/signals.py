"""The one owner of the process's signal handlers and of its immediate exit: no other module calls
``signal.signal`` or ``os._exit``; they say what a signal should do here, for as long as it should.

What Ctrl-C (SIGINT) and SIGTERM do, by the phase of a command:

- while it works (:func:`sigterm_stops`): SIGTERM stops the main thread as Ctrl-C does (``Terminated``, a
  ``KeyboardInterrupt``), so that its runs end KILLED and it exits 130 with one line;
- while a step must not be cut short (:class:`Hold`, e.g. a model version registered and its run ended): the
  first signal is held (one line says so), a second one stops at once;
- once its work is done (:func:`work_done`: its last run has ended): a signal is noted, not raised, while the
  command prints what it did; a second one ends the process at once (130);
- after it returned (:func:`exit_on_signals`): a signal ends the process with the command's code; at the
  interpreter's teardown, after every atexit handler, signals are ignored (Python puts the default action
  back then, and a signal would kill the process, exit -2, no line, while it frees its modules).

The last two apply only where the command line is the process's entry (:func:`own_process`), never to
library callers; only the main thread receives signals, and a signal ignored before (a job started in the
background ignores Ctrl-C) stays ignored. The children have their own rules: trial workers
(:func:`worker_signals`) and the fork server (:func:`fork_server_importing`, :func:`fork_server_ready`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hyperflow.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Any  # a callable (signum, frame), signal.SIG_IGN or signal.SIG_DFL


@dataclass
class _Command:
    """The command line that is this process's entry: its pid, whether its work is done, the signals noted."""

    owner: int | None = None
    done: bool = False
    noted: list[int] = field(default_factory=list)

    def done_here(self) -> bool:
        return self.done and self.owner == os.getpid()


_command = _Command()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def leave(code: int) -> None:
    """End the process now with ``code``, once stdout and stderr are flushed: no atexit handler, no teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def stop(signum: int) -> None:
    """Stop what the main thread does, as the signal ``signum`` would: Ctrl-C's KeyboardInterrupt, else
    ``Terminated`` (a KeyboardInterrupt too, so that runs end KILLED)."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"received signal {signum}")


def _stop(signum: int, frame: object) -> None:
    stop(signum)


# ------------------------------------------------------------------------------------------ the command


def own_process() -> None:
    """The command line is this process's entry: :func:`work_done` applies, and signals are ignored at the
    teardown (registered before MLflow and torch are imported, this handler runs after theirs)."""
    if _command.owner is None:
        _command.owner = os.getpid()
        atexit.register(_set_handlers, signal.SIG_IGN)


def work_done() -> None:
    """The command's last run has ended: from now on Ctrl-C and SIGTERM are noted and end the process with the
    command's code once it returns; a second one ends it at once (130). Nothing changes for library callers,
    outside the main thread, or in a process forked from the command's (a worker)."""
    if _command.owner == os.getpid() and not _command.done and _main_thread():
        _command.done = True
        _set_handlers(_note)


def is_done() -> bool:
    """Whether :func:`work_done` took the signals over."""
    return _command.done_here()


def _note(signum: int, frame: object = None) -> None:
    if _command.noted:
        leave(130)
    _command.noted.append(signum)


def _set_handlers(handler: Handler) -> None:
    if _main_thread():
        for signum in SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, handler)


def _give_back(previous: dict[int, Handler]) -> None:
    """Handlers back as they were, unless the command's work is done meanwhile: then the signals are noted."""
    for signum, handler in previous.items():
        signal.signal(signum, _note if _command.done_here() else handler)


def exit_on_signals(code: int) -> None:
    """The command returned ``code``: a signal noted since its work was done ends the process now, and from now
    on Ctrl-C or SIGTERM end it with ``code`` (the exit: MLflow's and torch's atexit handlers, the
    interpreter's teardown), instead of a KeyboardInterrupt traceback or a death by signal."""
    if _command.noted:
        leave(code)
    _set_handlers(lambda signum, frame: leave(code))


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM stops the main thread as Ctrl-C does while inside (nothing changes elsewhere, nor where Python
    does not own the handler); the handler as it was afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or not _main_thread():
        yield
        return
    signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        _give_back({signal.SIGTERM: previous})


class Hold:
    """Ctrl-C and SIGTERM held back from :meth:`hold` to :meth:`let_go`: the first one is held (one line names
    ``what`` is being done), a second one stops at once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.held: int | None = None
        self._previous: dict[int, Handler] = {}

    def hold(self) -> None:
        if self._previous or not _main_thread():
            return
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.held is not None:
            stop(signum)  # a second signal: stop now
        self.held = signum
        print(f"hyperflow: {self.what}; stopping once that is done (again to stop now)", file=sys.stderr, flush=True)

    def let_go(self, *, failed: bool = False) -> int | None:
        """Handlers back as they were; the signal held, for the caller to :func:`stop` with, or None (none was
        held, an exception is on its way: ``failed``, or the command's work is done: the process's exit has
        it)."""
        previous, self._previous = self._previous, {}
        if _command.done_here():
            _set_handlers(_note)
            if self.held is not None and not failed:
                _note(self.held)
            return None
        _give_back(previous)
        return None if failed else self.held


# ------------------------------------------------------------------------------------------ the children


def worker_signals(on_sigterm: Callable[[], None]) -> None:
    """In a trial worker: Ctrl-C is left to the search (which relays it once, as SIGTERM), and SIGTERM calls
    ``on_sigterm`` (which may raise into the trial in flight)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: on_sigterm())


def fork_server_importing() -> None:
    """The fork server while it imports (it holds nothing yet): Ctrl-C ends it at once and silently."""
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(0))


def fork_server_ready() -> None:
    """The fork server once imported: Ctrl-C is Python's again (multiprocessing then shields the server, and
    the children it forks start with Python's handler), and its exit is at once (``os._exit`` as its only
    atexit handler: it holds no data; its children never run atexit)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    atexit.register(os._exit, 0)
