"""Signals at the end of a command: Ctrl-C or SIGTERM while a model version is registered is held until its
run has ended (so no version comes from a run that then ends KILLED); after the command has returned, one
ends the process with the command's code and no traceback. Output closed early (``| head``) drops what is
written after it, the work goes on to its end, exit 141, no traceback."""

import os
import signal
import subprocess
import sys

import mlflow
import pytest

from hyperflow.errors import Terminated
from hyperflow.tracking.held_signals import HeldSignals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_registering_is_held_and_dropped_once_the_work_is_done(cli_signals, capsys, signum):
    held = HeldSignals("registering the model")
    held.hold()
    os.kill(os.getpid(), signum)  # handled before the next line runs: held, not raised
    assert held.held == signum
    held.release()  # no run open around it: the command's work is done, the signal is dropped
    assert "registering the model; stopping once that is done" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back


def test_a_held_signal_stops_the_work_around_it_once_released(cli_signals, experiment):
    mlflow.set_experiment(experiment)
    with pytest.raises(Terminated):
        with mlflow.start_run() as outer:  # e.g. a retrain, whose training run has just registered its model
            held = HeldSignals("registering the model")
            held.hold()
            os.kill(os.getpid(), signal.SIGTERM)
            held.release()
    assert mlflow.get_run(outer.info.run_id).info.status != "RUNNING"


def test_a_second_signal_stops_at_once(cli_signals):
    held = HeldSignals("registering the model")
    held.hold()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    held.release(failed=True)  # an exception on its way: nothing more is raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_after_the_command_returned_ends_the_process_with_its_code():
    code = ("import os, signal, sys, time\n"
            "from hyperflow.core.process_exit import exit_on_signals\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "print('summary', flush=False)\n"
            "exit_on_signals(3)\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "time.sleep(60)\n"
            "print('went on')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (3, "summary\n", "")


def test_stdout_closed_early_exits_141_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "hyperflow", "train", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes, as with `| head` or `| true`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_output_closed_during_the_work_leaves_the_work_whole(tracking_uri, tmp_path):
    """`hyperflow train ... 2>&1 | head -1`: the reader goes away before MLflow's registration line; the run
    still ends FINISHED with its version (before: BrokenPipeError mid-registration, run KILLED, version left)."""
    name = f"pipe-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    proc = subprocess.Popen([sys.executable, "-m", "hyperflow", "train", "data=digits", "epochs=1", "width=16",
                             f"model_name={name}", "experiment=pipe"],
                            env={**env, "MLFLOW_TRACKING_URI": tracking_uri}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.close()
    assert proc.wait(timeout=300) == 141
    run, = mlflow.search_runs(experiment_names=["pipe"], output_format="list")
    version, = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    assert run.info.status == "FINISHED" and version.run_id == run.info.run_id
