"""Signals before a command has a run: SIGTERM gives exit 130 and one line as Ctrl-C does, and a Ctrl-C that
reaches the fork server while it still imports ends it without a traceback."""

import os
import signal
import socket
import subprocess
import sys

import forked
import pytest

from hyperflow.runtime.processes import PRELOAD


@pytest.mark.integration
def test_sigterm_before_any_run_exits_130_with_one_line(tmp_path):
    """The command waits for a tracking server that accepted the connection and never answers (the moment
    it is waiting is the accepted connection, not a sleep); SIGTERM then ends it like Ctrl-C."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
            env.pop(var, None)
        proc = forked.Popen(
            [sys.executable, "-m", "hyperflow", "train", "epochs=1", "experiment=term", "progress=false"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            silent.settimeout(120)
            connection, _ = silent.accept()  # the command asks the store about its experiment
            with connection:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip() == "hyperflow train: interrupted; its runs were ended as KILLED"


def _interrupted_while_preloading(modules: list[str]) -> subprocess.CompletedProcess:
    code = (
        "import importlib, os, signal, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "import mlflow\n"  # a long import, during which the signal is handled
        "print('went on')\n"
    )
    return forked.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_a_ctrl_c_while_the_fork_server_imports_ends_it_silently():
    assert PRELOAD[0] == "hyperflow.runtime.fork_server_start" and PRELOAD[-1] == "hyperflow.runtime.fork_server"
    quiet = _interrupted_while_preloading(PRELOAD[:1])
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    # after the last preload module, Ctrl-C is Python's again (multiprocessing then ignores it in the server,
    # and the children it forks start with Python's handler)
    normal = _interrupted_while_preloading([PRELOAD[0], PRELOAD[-1]])
    assert "KeyboardInterrupt" in normal.stderr and "went on" not in normal.stdout
