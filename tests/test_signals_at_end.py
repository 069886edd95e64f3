"""Signals at the end of a command: Ctrl-C or SIGTERM while a model version is registered is held until its
run has ended (so no version comes from a run that then ends KILLED); after the command has returned, one
ends the process with the command's code and no traceback. Output closed early (``| head``) drops what is
written after it, the work goes on to its end, exit 141, no traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import forked
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


@pytest.mark.integration
@pytest.mark.parametrize(
    "work, expected",
    [
        ("exit_on_signals(3)\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(60)\n", (3, "summary\n")),
        # once the work is done (its last run ended) a signal is noted: what follows runs, then the command's code
        (
            "own_process()\nwork_done()\nos.kill(os.getpid(), signal.SIGINT)\nprint('more')\nexit_on_signals(3)\n",
            (3, "summary\nmore\n"),
        ),
        (
            "own_process()\nwork_done()\nos.kill(os.getpid(), signal.SIGINT)\nos.kill(os.getpid(), signal.SIGTERM)\n",
            (130, "summary\n"),
        ),  # a second one ends it at once
    ],
)
def test_a_signal_after_the_command_returned_ends_the_process_with_its_code(work, expected):
    code = (
        "import os, signal, sys, time\n"
        "from hyperflow.runtime.signals import exit_on_signals, own_process, work_done\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "print('summary', flush=True)\n"
        f"{work}"
        "print('went on')\n"
    )
    done = forked.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (*expected, "")


@pytest.mark.integration
def test_stdout_closed_early_exits_141_without_a_traceback():
    proc = forked.Popen(
        [sys.executable, "-m", "hyperflow", "train", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before the command writes, as with `| head` or `| true`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


@pytest.mark.integration
def test_output_closed_during_the_work_leaves_the_work_whole(tracking_uri, tmp_path):
    """`hyperflow train ... 2>&1 | head -1`: the reader goes away before MLflow's registration line; the run
    still ends FINISHED with its version (before: BrokenPipeError mid-registration, run KILLED, version left)."""
    name = f"pipe-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    proc = forked.Popen(
        [
            sys.executable,
            "-m",
            "hyperflow",
            "train",
            "data=digits",
            "epochs=1",
            "width=16",
            f"model_name={name}",
            "experiment=pipe",
        ],
        env={**env, "MLFLOW_TRACKING_URI": tracking_uri},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    proc.stdout.close()
    assert proc.wait(timeout=300) == 141
    (run,) = mlflow.search_runs(experiment_names=["pipe"], output_format="list")
    (version,) = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    assert run.info.status == "FINISHED" and version.run_id == run.info.run_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from tiny_model import register_tiny

    return register_tiny(tmp_path_factory.mktemp("signals"))


def paused(tmp_path, moment: str, *argv: str) -> subprocess.Popen:
    """``hyperflow <argv>`` (tests/paused_command.py) that stops at ``moment`` until the file ``go`` exists."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env.update(PAUSE_AT=moment, PAUSE_DIR=str(tmp_path))
    return forked.Popen(
        [sys.executable, str(Path(__file__).with_name("paused_command.py")), *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_at(proc: subprocess.Popen, tmp_path, moment: str, signum: int) -> tuple[int, str, str]:
    """Send ``signum`` once ``proc`` is at ``moment``, let it go on; its exit code, stdout and stderr."""
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(f"{moment}-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signum)
    (tmp_path / "go").touch()
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.mark.integration
@pytest.mark.parametrize(
    "moment, signum",
    [("moved", signal.SIGINT), ("output", signal.SIGINT), ("output", signal.SIGTERM), ("exit", signal.SIGINT)],
)
def test_a_signal_once_the_champion_moved_ends_promote_with_its_own_code(tiny, tmp_path, experiment, moment, signum):
    """Ctrl-C or SIGTERM after the gate passed and the champion moved: exit 0, as promised, whether the run is
    still being recorded (held), the summary is being printed, or the interpreter is freeing its modules;
    before, the first gave 0, the second 130 ("interrupted"), the last died of the signal (exit -2, no line)."""
    from tiny_model import copies

    name, (_old, new) = copies(tiny, 2)
    proc = paused(tmp_path, moment, "promote", f"model_name={name}", f"version={new}", f"experiment={experiment}")
    code, out, err = signal_at(proc, tmp_path, moment, signum)
    assert (code, "Traceback" in err, "interrupted" in err) == (0, False, False), err
    assert f"{name} version {new} promoted to champion" in out
    assert mlflow.MlflowClient().get_model_version_by_alias(name, "champion").version in (new, int(new))
    (run,) = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["hyperflow.promoted"] == "true"


@pytest.mark.integration
def test_a_signal_once_train_registered_its_model_ends_it_with_its_own_code(tmp_path, experiment):
    """SIGTERM while the interpreter frees its modules after a train that registered its model: exit 0."""
    from test_registry import items_csv

    proc = paused(
        tmp_path,
        "exit",
        "train",
        f"data={items_csv(tmp_path / 'items.csv')}",
        "target=kind",
        "epochs=1",
        "width=8",
        "progress=false",
        f"model_name=sig-{os.getpid()}",
        f"experiment={experiment}",
    )
    code, out, err = signal_at(proc, tmp_path, "exit", signal.SIGTERM)
    assert (code, "Traceback" in err) == (0, False), err
    assert "registered version 1" in out


@pytest.mark.integration
def test_a_signal_once_retrain_promoted_ends_it_with_its_own_code(tiny, tmp_path, experiment):
    """Ctrl-C while retrain prints its outcome (its runs have ended, the champion moved): exit 0, not 130."""
    from tiny_model import copies

    name, _ = copies(tiny, 1)
    proc = paused(
        tmp_path,
        "output",
        "retrain",
        f"model_name={name}",
        "epochs=1",
        "force=true",
        "gate.accuracy.threshold=0",
        f"experiment={experiment}",
    )
    code, out, err = signal_at(proc, tmp_path, "output", signal.SIGINT)
    assert (code, "Traceback" in err, "interrupted" in err) == (0, False, False), err
    assert "hyperflow retrain: promoted: version 2" in out
