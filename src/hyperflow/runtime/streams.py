"""stdout and stderr of a command whose reader may go away (``| head``): what is written after that does not
break the work, and the command's exit code says 141. Used by the command line when it is the process's entry
(the ``hyperflow`` script, ``steps/*.py``), never by library callers."""

from __future__ import annotations

import os
import sys
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
