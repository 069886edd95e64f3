"""Live progress: a search's (one updating line on a terminal, one line per finished trial elsewhere, whichever
backend runs the trials) and training's (one line per epoch off a terminal); ``progress=false`` silences both."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import sys
import termios
import time

import forked
import pytest
from hyperopt import Trials

from hyperflow import search as api_search
from hyperflow.cli import main
from hyperflow.engine import hyperopt_records as records
from hyperflow.engine.progress import SearchProgress
from hyperflow.engine.space_hyperopt import to_hyperopt

TRIAL_LINE = re.compile(r"^search: trial (\d+) (ok|pruned|failed)")
SEARCH = ["search", "data=digits", "epochs=1", "width=8", "batch_size=64", "max_evals=3", "register=false"]


def quadratic(params, trial):
    return (params["x"] - 0.3) ** 2


SPACE = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}


def test_off_a_terminal_each_finished_trial_is_one_line_with_counts_best_and_time_left():
    out = io.StringIO()
    progress = SearchProgress(4, history=[("ok", 0.5, 2, 0)], stream=out)
    progress.add(1, "pruned", 0.7, 1)
    progress.add(2, "ok", 0.25, 2)
    progress.add(3, "failed", None, 0)
    lines = out.getvalue().splitlines()
    assert [TRIAL_LINE.match(line).groups() for line in lines] == [("1", "pruned"), ("2", "ok"), ("3", "failed")]
    assert "2/4 done, ok 1, pruned 1, failed 0 | best 0.5 (trial 0)" in lines[0]
    assert "4/4 done, ok 2, pruned 1, failed 1 | best 0.25 (trial 2)" in lines[2]
    assert lines[0].endswith("left") and lines[2].endswith("~00:00 left")  # all trials done: nothing left


def test_time_left_is_that_of_the_first_limit_reached():
    progress = SearchProgress(None, budget=100, deadline=time.time() + 3600, stream=io.StringIO())
    assert progress.left(10.0) == pytest.approx(3600, abs=5)  # no trial yet: the deadline alone
    progress.add(0, "ok", 1.0, 10)  # 10 of 100 units in 10 s: 90 s left, before the deadline
    assert progress.left(10.0) == pytest.approx(90)
    assert SearchProgress(None, stream=io.StringIO()).left(10.0) is None


def test_on_a_terminal_the_search_is_one_updating_line():
    leader, follower = _terminal()
    with open(follower, "w") as stream:
        progress = SearchProgress(3, stream=stream)
        for number, loss in enumerate([0.4, 0.2, 0.3]):
            progress.add(number, "ok", loss, 1)
        progress.close()
    shown = _read(leader)
    assert "search: 3/3 trials |████████████| ok 3, pruned 0, failed 0 | best 0.2 (trial 1) | 00:00 elapsed" in shown
    assert "\r" in shown and "search: trial" not in shown  # redrawn in place, not a line per trial
    os.close(leader)


def test_on_a_terminal_the_elapsed_time_moves_while_a_trial_runs():
    leader, follower = _terminal()
    with open(follower, "w") as stream:
        progress = SearchProgress(3, stream=stream, refresh=0.01)
        progress.started -= 65  # the search began 65 s ago; no trial has finished since
        shown = _read(leader, until=lambda: False, deadline=10, stop=lambda text: "01:05 elapsed" in text)
        progress.close()
    assert "search: 0/3 trials" in shown and "01:05 elapsed" in shown
    os.close(leader)


def test_trials_finished_elsewhere_reach_the_progress_through_fmin():
    seen = []
    trials = Trials()
    suggest = records.algo("random", 20, 0.25, seed=1, stop=lambda done: "")
    shown = records.FinishedTrials(trials, lambda *trial: seen.append(trial))
    records.minimize(lambda s: records.result(s["x"]), to_hyperopt(SPACE), trials, suggest, 3, 1, progressbar=shown)
    assert [(number, status) for number, status, _, _ in seen] == [(0, "ok"), (1, "ok"), (2, "ok")]
    assert [loss for _, _, loss, _ in seen] == trials.losses()


def test_a_search_of_ones_own_objective_shows_its_trials_unless_progress_is_off(experiment, capsys):
    api_search(quadratic, SPACE, max_evals=3, parallelism=1, experiment=experiment)
    lines = [line for line in capsys.readouterr().err.splitlines() if TRIAL_LINE.match(line)]
    assert [TRIAL_LINE.match(line).group(1) for line in lines] == ["0", "1", "2"] and "3/3 done" in lines[-1]
    api_search(quadratic, SPACE, max_evals=2, parallelism=1, experiment=experiment, progress=False)
    assert "search:" not in capsys.readouterr().err


def test_training_off_a_terminal_prints_a_line_per_epoch(experiment, capsys):
    argv = ["train", "data=digits", "epochs=2", "width=8", "log_model=false", f"experiment={experiment}"]
    assert main(argv) == 0
    epochs = [line for line in capsys.readouterr().err.splitlines() if re.match(r"train digits: epoch \d/2 ", line)]
    assert len(epochs) == 2 and "val_loss" in epochs[1] and epochs[1].endswith("~00:00 left")
    assert main([*argv, "progress=false"]) == 0
    assert "epoch" not in capsys.readouterr().err


@pytest.mark.integration
def test_a_search_on_workers_into_a_pipe_prints_one_line_per_trial(tmp_path, experiment):
    proc = forked.run(
        [*forked.HYPERFLOW, *SEARCH, "parallelism=2", f"experiment={experiment}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if TRIAL_LINE.match(line)]
    assert sorted(TRIAL_LINE.match(line).group(1) for line in lines) == ["0", "1", "2"]
    assert [line.split(" | ")[1].split(" done")[0] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "\r" not in proc.stderr


@pytest.mark.integration
def test_a_search_on_a_terminal_shows_one_updating_line(tmp_path, experiment):
    leader, follower = _terminal()
    proc = forked.Popen(
        [*forked.HYPERFLOW, *SEARCH, "parallelism=1", f"experiment={experiment}"],
        cwd=tmp_path,
        stdout=forked.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = _read(leader, until=lambda: proc.poll() is not None, deadline=300)
    os.close(leader)
    assert proc.wait(10) == 0, shown
    assert "search: 3/3 trials" in shown and re.search(r"ok 3, pruned 0, failed 0 \| best \S+ \(trial \d\)", shown)
    assert "search: trial" not in shown


def _terminal() -> tuple[int, int]:
    """A pseudo-terminal 160 columns wide (a new one has none, and tqdm fits its line to the width)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    return leader, follower


def _read(fd: int, until=lambda: True, deadline: float = 10, stop=lambda text: False) -> str:
    """What was written to a pseudo-terminal's other end, until ``until()`` and nothing more to read, or until
    what was read makes ``stop(text)`` true."""
    chunks, end = [], time.monotonic() + deadline
    while time.monotonic() < end and not stop(b"".join(chunks).decode(errors="replace")):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed (Linux: EIO)
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif until():
            break
    return b"".join(chunks).decode(errors="replace")


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("pseudo-terminals are POSIX")
