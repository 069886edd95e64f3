"""``python tests/paused_command.py <command> key=value ...`` runs ``hyperflow <command>`` as ``python -m hyperflow``
does, stopping once at the moment named by ``PAUSE_AT`` until the test lets it go, so that a test can act at
that moment (send a signal, start another job) with no timing involved.

At the moment it writes the file ``$PAUSE_DIR/<moment>-<pid>`` (the test's event), then waits until
``$PAUSE_DIR`` holds ``$PAUSE_COUNT`` such files (processes meeting there: a barrier) or, without
``PAUSE_COUNT``, until the file ``$PAUSE_DIR/go`` exists. Moments:

- ``move``: a promotion has read the champion again and is about to move it
- ``moved``: a promotion has just moved the champion (its signals are held)
- ``output``: the first write on stdout, the command's summary: its work is done
- ``exit``: the last exit handler has run (the interpreter frees its modules next); no waiting there
"""

import atexit
import os
import sys
import time
from pathlib import Path
from typing import Any


def pause(moment: str, wait: bool = True) -> None:
    folder = Path(os.environ["PAUSE_DIR"])
    (folder / f"{moment}-{os.getpid()}").touch()
    count = int(os.environ.get("PAUSE_COUNT", "0"))
    deadline = time.monotonic() + 120  # a peer that died before the moment: the test fails, not hangs
    while wait and time.monotonic() < deadline:
        if (count and len(list(folder.glob(f"{moment}-*"))) >= count) or (folder / "go").exists():
            return
        time.sleep(0.005)
    if wait:
        raise RuntimeError(f"paused_command: nobody let {moment} go")


class _FirstWrite:
    """stdout that pauses before its first write."""

    def __init__(self, stream: Any) -> None:
        self._stream, self._paused = stream, False

    def write(self, text: str) -> int:
        if not self._paused:
            self._paused = True
            pause("output")
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _around_move(moment: str) -> None:
    from hyperflow.workflows import promote

    move_alias = promote.move_alias

    def paused_move(*args: Any) -> None:
        if moment == "move":
            pause(moment)
        move_alias(*args)
        if moment == "moved":
            pause(moment)

    promote.move_alias = paused_move


def main() -> None:
    moment = os.environ["PAUSE_AT"]
    if moment == "exit":
        atexit.register(pause, "exit", False)  # registered first: runs after every other exit handler
    elif moment == "output":
        sys.stdout = _FirstWrite(sys.stdout)
    else:
        _around_move(moment)
    from hyperflow.cli import main as hyperflow

    sys.exit(hyperflow())


if __name__ == "__main__":
    main()
