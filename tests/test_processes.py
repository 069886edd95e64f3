"""Whether a process is alive: one function for the orphan watch (a pid and its start time, so a pid used again
by another process is not taken for the one that is gone) and for a lock's holder on this host (a pid only)."""

import os
import subprocess
import sys

import pytest

from hyperflow.runtime.processes import alive, process_identity


def test_a_running_process_is_alive_by_pid_and_by_identity():
    assert alive(os.getpid())
    assert alive(*process_identity(os.getpid()))


@pytest.mark.integration
def test_a_process_that_exited_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(child.pid)
    child.wait()
    assert not alive(child.pid) and not alive(*identity)


def test_another_start_time_is_another_process():
    pid, started = process_identity(os.getpid())
    if started is None:  # no /proc: the start time is not known here
        return
    assert not alive(pid, str(int(started) + 1))
