"""A search's live progress, the one place that prints it, whichever backend runs the trials: on a terminal one
updating line (tqdm): trials done/total, ok/pruned/failed, the best loss so far and its trial, elapsed and
estimated time left; elsewhere (a scheduler's log, a pipe) one plain line per finished trial."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm

from hyperflow import names

FORMAT = "{desc}: {n_fmt}/{total_fmt} trials |{bar:12}| "  # then the summary (tqdm's postfix would start with ", ")


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``), as tqdm writes times."""
    return tqdm.format_interval(max(0.0, seconds))


class SearchProgress:
    """Told of each finished trial (:meth:`add`), it prints the search's progress to ``stream`` (stderr).
    ``total``: the trials the search runs at most (None: no count ends it); ``budget``: its units of work
    (0: none); ``deadline``: its wall-clock end (None: none); ``history``: the (status, loss, units, number)
    of the trials a resumed search ran before; ``refresh``: seconds between redraws of the line while no trial
    finishes (its elapsed and time left move during a long trial; tqdm redraws only when told)."""

    def __init__(
        self,
        total: int | None,
        *,
        budget: int = 0,
        deadline: float | None = None,
        history: Iterable[tuple[str, float | None, int, int]] = (),
        stream: TextIO | None = None,
        refresh: float = 1.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total, self.budget, self.deadline = total, budget, deadline
        self.counts = {names.TRIAL_OK: 0, names.TRIAL_PRUNED: 0, names.TRIAL_FAILED: 0}
        self.best: tuple[float, int] | None = None
        self.units = 0
        for status, loss, units, number in history:
            self._count(status, loss, units, number)
        self.before, self.units_before = self.done, self.units
        self.started = time.monotonic()
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(
                total=total, initial=self.done, desc="search", file=self.stream, bar_format=FORMAT, dynamic_ncols=True
            )
            self._show()
            self._lock, self._closed = threading.Lock(), threading.Event()
            self._ticker = threading.Thread(target=self._tick, args=(refresh,), name="search-progress", daemon=True)
            self._ticker.start()

    def _tick(self, every: float) -> None:
        """Redraw the line every ``every`` seconds until :meth:`close`."""
        while not self._closed.wait(every):
            with self._lock:
                self._show()

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def _count(self, status: str, loss: float | None, units: int, number: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.units += units
        if status == names.TRIAL_OK and loss is not None and (self.best is None or loss < self.best[0]):
            self.best = (loss, number)

    def add(self, number: int, status: str, loss: float | None, units: int = 0) -> None:
        """One more finished trial: the line updated, or a line of its own."""
        self._count(status, loss, units, number)
        if self.bar is not None:
            with self._lock:
                self.bar.update(1)
                self._show()
            return
        value = f" loss {loss:.4g}" if loss is not None and status != names.TRIAL_FAILED else ""
        total = "" if self.total is None else f"/{self.total}"
        print(f"search: trial {number} {status}{value} | {self.done}{total} done, {self.summary()}", file=self.stream)
        self.stream.flush()

    def _show(self) -> None:
        """The updating line redrawn with the summary as of now."""
        self.bar.bar_format = FORMAT + self.summary().replace("{", "{{").replace("}", "}}")
        self.bar.refresh()

    def summary(self) -> str:
        """ok/pruned/failed, the best so far and its trial, elapsed and (once a trial finished) time left."""
        c = self.counts
        best = "best -" if self.best is None else f"best {self.best[0]:.4g} (trial {self.best[1]})"
        elapsed = time.monotonic() - self.started
        left = self.left(elapsed)
        until = "" if left is None else f", ~{clock(left)} left"
        ok, pruned, failed = c[names.TRIAL_OK], c[names.TRIAL_PRUNED], c[names.TRIAL_FAILED]
        return f"ok {ok}, pruned {pruned}, failed {failed} | {best} | {clock(elapsed)} elapsed{until}"

    def left(self, elapsed: float) -> float | None:
        """Time left until the first limit ends the search (trials, units of work or the deadline), at this
        session's pace so far; None before a trial finished and without any limit."""
        ran, used = self.done - self.before, self.units - self.units_before
        estimates = []
        if self.total is not None and ran:
            estimates.append(elapsed * max(0, self.total - self.done) / ran)
        if self.budget and used:
            estimates.append(elapsed * max(0, self.budget - self.units) / used)
        if self.deadline is not None:
            estimates.append(max(0.0, self.deadline - time.time()))
        finite = [e for e in estimates if math.isfinite(e)]
        return min(finite) if finite else None

    def close(self) -> None:
        if self.bar is not None:
            self._closed.set()
            self._ticker.join()
            self.bar.close()
            self.bar = None
