"""Shared fixtures: one real sqlite MLflow store per test session (a copy of the empty store, as commands make)."""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import mlflow
import pytest

from hyperflow.errors import raise_terminated
from hyperflow.tracking import new_store

MEMORY_FOLDER = "/dev/shm"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The tests' files (tmp_path, stores, servers' homes, the commands' own temporary files) go to memory
    (tmpfs) where the machine has it: a sqlite commit waits for the disk 3-4 times (fsync), and the suite commits
    tens of thousands of times. Measured, tests/test_registry.py alone, two alternating rounds on the loaded
    machine: 64-68 s on disk, 48-50 s in memory. Test processes and commands inherit TMPDIR."""
    if config.option.basetemp or os.environ.get("TMPDIR") or not os.access(MEMORY_FOLDER, os.W_OK):
        return  # chosen by the caller, or no tmpfs here
    folder = os.path.join(MEMORY_FOLDER, "hyperflow-tests")
    os.makedirs(folder, exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = folder


# Spark's driver (a JVM, local mode) in the tests compiles less and collects with one thread: start-up and a tiny
# job take 9.5-11.7 CPU-s instead of 15.8-18.4 (3 alternating rounds, loaded machine); the suite starts ~8.
os.environ.setdefault(
    "PYSPARK_SUBMIT_ARGS", "--driver-java-options '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' pyspark-shell"
)


@pytest.fixture(scope="session", autouse=True)
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    new_store.make_if_missing(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    mlflow.set_tracking_uri(uri)
    previous = os.getcwd()
    os.chdir(root)  # MLflow's default artifact root (./mlruns) lands in the temp dir, not the repo
    yield uri
    os.chdir(previous)


@pytest.fixture(autouse=True)
def no_inherited_experiment_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: without the MLFLOW_EXPERIMENT_ID that ``mlflow.set_experiment``
    in an earlier test left in this process's environment (a command refuses an id its store lacks)."""
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


@pytest.fixture
def experiment() -> str:
    """A fresh experiment per test, so runs of different tests never mix."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(name)
    return name


@pytest.fixture
def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


@pytest.fixture
def cli_signals():
    """Ctrl-C and SIGTERM handled as the command line has them (KeyboardInterrupt, Terminated), whatever the
    test runner inherited: one started in the background (nohup, `&`) has Ctrl-C ignored."""
    assert threading.current_thread() is threading.main_thread()  # signals are handled in the main thread
    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, raise_terminated)
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


# The two tiers (docs/development.md): a test that starts a process (a subprocess, a worker, a server, Spark's JVM)
# carries @pytest.mark.integration; `python -m pytest -m "not integration"` runs the rest, the inner loop.
# Checked at run time: an unmarked test whose set-up or body starts a process fails, naming what it started.
_PROCESS_EVENTS = frozenset(
    {"hyperflow.tests.command", "subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system"}
)
_started: list[str] | None = None  # what the running unmarked test started; None while no such test runs


def _audit(event: str, args: tuple) -> None:
    if _started is None or event not in _PROCESS_EVENTS:
        return
    what = event
    if event == "hyperflow.tests.command":  # tests/forked.py: a command forked from its template
        what = "python -m hyperflow"
    elif event == "subprocess.Popen":  # (executable, args, cwd, env): args a list, or one line for a shell
        command = args[1] if isinstance(args[1], str | bytes) else args[1][0]
        what = os.path.basename(os.fsdecode(args[0] or str(command).split()[0]))
        if what == "git":  # MLflow's source-version lookup at a run's start: milliseconds, not a tier's worth
            return
    _started.append(what)


def _process_start(start: Callable[[BaseProcess], None]) -> Callable[[BaseProcess], None]:
    """multiprocessing's fork server forks the children itself, so their start raises no audit event here."""

    @functools.wraps(start)
    def recorded(process: BaseProcess) -> None:
        if _started is not None:
            _started.append(f"multiprocessing {process.name}")
        start(process)

    return recorded


sys.addaudithook(_audit)
BaseProcess.start = _process_start(BaseProcess.start)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    return (yield from _watched(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _watched(item))


def _watched(item: pytest.Item):
    global _started
    if item.get_closest_marker("integration"):
        return (yield)
    _started = []
    try:
        result = yield
    finally:
        started, _started = _started, None
    if started:
        pytest.fail(
            f"{item.nodeid} starts a process but is not marked @pytest.mark.integration: {started[0]}"
            + (f" (and {len(started) - 1} more)" if len(started) > 1 else ""),
            pytrace=False,
        )
    return result


# The files whose tests use the shared tracking server (tests/services.py), and Spark's: one unit of work, so that
# the server starts once in the session, not once in each test process, and so does Spark's JVM (a Spark session
# made again in the same process reuses it: test_spark and test_spark_trials in two processes 69.6 CPU-s, 131 s, in
# one 60.0 CPU-s, 121 s, idle machine).
SHARED_SERVER_FILES = frozenset(
    {"test_server.py", "test_slow_server.py", "test_spark.py", "test_spark_trials.py", "test_secrets.py"}
)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's units of work (`--dist loadfile` in pyproject.toml): a test file, so that its module's
    fixtures are set up once, or the files of the shared tracking server together; each process takes the next
    unit in the order of ``pytest_collection_modifyitems`` (`--no-loadscope-reorder`). (`--dist loadgroup` would
    name the groups with markers, but pytest 9 no longer lets pytest-xdist 3.8 rename its tests' ids for it.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileOrSharedServer(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "shared tracking server" if os.path.basename(file) in SHARED_SERVER_FILES else file

    return FileOrSharedServer(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The units with the most integration tests run first (they are the long ones; the short ones fill the end),
    each unit's tests in their order."""

    def unit(item: pytest.Item) -> str:
        return "shared tracking server" if item.path.name in SHARED_SERVER_FILES else str(item.path)

    weight: dict[str, int] = {}
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        first.setdefault(unit(item), index)
        weight[unit(item)] = weight.get(unit(item), 0) + bool(item.get_closest_marker("integration"))
    items.sort(key=lambda item: (-weight[unit(item)], first[unit(item)]))
