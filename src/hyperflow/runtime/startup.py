"""Start-up of a command: Python's cyclic garbage collector kept from re-scanning what the imports made.

A command imports torch, MLflow, scikit-learn and more: ~650,000 objects (modules, classes, functions) that
live until the process ends. With Python's default thresholds each full collection walks all of them
again: a ``hyperflow train`` spent ~2 s in 9 full collections while importing, and the interpreter's own
collections at exit took 2-3 s more (bench/cold_start.py). The command line therefore follows the recipe
of ``gc.freeze``'s documentation:

- ``begin``: no automatic collection while the command starts (imports, store, data, model);
- ``end``: when its work proper begins (its callers call it just before the trainer's or the LR finder's
  ``fit``, which know no process, before predict's scoring, and when a search's trials start, wherever they
  run), the objects alive then move to the permanent generation (``gc.freeze``) and collection is on again:
  later collections walk only what the work creates;
- ``restore``: when the command returns, both are undone (a process that calls the CLI more than once, e.g.
  a test run, gets its collector back as it was);
- at exit, after every other atexit handler (MLflow's run end and flushes, logging's, torch's), the heap is
  frozen again: the interpreter then frees the modules without searching them for cycles first.

Nothing else is skipped: objects still die, every atexit handler runs; an object in a reference cycle at
exit is not finalized, which Python does not promise anyway. The cost: garbage cycles made during the
start-up stay (a few MB). ``hyperflow.search`` (the Python API) runs its search the same way without the exit hook
(``begin(at_exit=False)``): when it returns, the caller's collector is as it was (the full collections of a
1,000-trial search of a trivial function, one at a time: 0.77-0.87 s against 1.20-1.39 s, 3 runs each, timed by
``gc.callbacks``; docs/history/benchmarks-journal.md).
"""

from __future__ import annotations

import atexit
import gc
import threading
from dataclasses import dataclass, field


@dataclass
class _Phase:
    """This process's start-up phase: whether it is on, and what :func:`restore` undoes."""

    starting: bool = False
    was_enabled: bool = True  # the collector before begin
    froze: bool = False  # the freeze is ours to undo
    exit_hook: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_phase = _Phase()


def begin(at_exit: bool = True) -> None:
    """The command is starting: no automatic collection until :func:`end`; a frozen heap at exit (``at_exit``)."""
    with _phase.lock:
        if not _phase.starting:
            _phase.starting, _phase.was_enabled = True, gc.isenabled()
            gc.disable()
    if at_exit and not _phase.exit_hook:  # registered before MLflow's and torch's handlers: runs after them
        atexit.register(gc.freeze)
        _phase.exit_hook = True


def end() -> None:
    """The command's work begins: what exists now is treated as permanent; collection is on again."""
    with _phase.lock:
        if _phase.starting:
            _phase.froze = _phase.froze or not gc.get_freeze_count()  # only undo a freeze of our own
            gc.freeze()
            if _phase.was_enabled:
                gc.enable()
            _phase.starting = False


def restore() -> None:
    """The command returned: the collector as it was before :func:`begin` (the exit hook stays)."""
    end()
    with _phase.lock:
        if _phase.froze:
            gc.unfreeze()
            _phase.froze = False
