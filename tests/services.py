"""Real services for tests: a private PostgreSQL cluster and ``mlflow server`` with basic auth, on free
loopback ports, started by ``deploy/server.py`` (so the tests exercise the kit users run).

In a test module::

    from services import mlflow_server  # noqa: F401  (the session-scoped fixture)

    def test_something(mlflow_server):
        name, password = mlflow_server.create_user(role="searcher")
        env = mlflow_server.env(name)            # MLFLOW_TRACKING_URI/USERNAME/PASSWORD for a subprocess
        with mlflow_server.as_user(name):        # the same for this process (tracking URI included)
            ...
        mlflow_server.stop(); mlflow_server.start()   # same ports, same database

One server serves the whole session however many modules import the fixture.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hyperflow.tracking import new_store

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "server.py"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _load_kit():
    spec = importlib.util.spec_from_file_location("hyperflow_deploy_server", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _load_kit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment() -> dict[str, str]:
    """The environment of an ``mlflow server`` the tests start: none of this process's MLFLOW_ settings, the
    interpreter's folder first on PATH (its uvicorn), and no job execution: MLflow 3 otherwise starts a job runner
    and a huey consumer per server, for GenAI jobs the tests never submit. Measured, one server on sqlite,
    alternating rounds on the loaded machine: ready in 13-18 s and 7.2-8.3 CPU-s without it, 26-36 s and
    17.8-19.7 CPU-s with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


class SqliteServer:
    """A plain ``mlflow server`` (no auth) over a sqlite store, in a session of its own: ``start`` returns at
    once, ``ready`` waits until it answers; ``kill`` takes it down with its workers at once, ``stop`` gently;
    ``start`` again serves the same store on the same port."""

    def __init__(self, home: Path, backend: str | None = None, port: int | None = None) -> None:
        self.home, self.port, self.proc = Path(home), port or free_port(), None
        self.backend = backend or f"sqlite:///{self.home}/server.db"
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> SqliteServer:
        new_store.make_if_missing(self.backend)  # a copy of the empty store, not MLflow's migrations in the server
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend]
        command += ["--default-artifact-root", str(self.home / "artifacts"), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1"]
        with (self.home / "server.log").open("a") as log:
            self.proc = subprocess.Popen(
                command, env=server_environment(), cwd=self.home, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def ready(self, timeout: float = 120) -> SqliteServer:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.home / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start (exit {self.proc.poll()}):\n{log}") from None
                time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # the server and the workers it started
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def postgres_missing() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    try:
        kit.find_postgres_bin(None)
    except kit.UsageError as exc:
        return str(exc)
    return None


class MlflowServer:
    """``deploy/server.py serve`` in a temporary home; ``uri``, ``admin`` = (user, password)."""

    def __init__(self, workers: int = 1) -> None:  # one worker starts faster; it serves requests in threads
        # the postgres user (when we are root) must traverse the home: mkdtemp makes it 0700
        self.home = Path(tempfile.mkdtemp(prefix="hyperflow-server-"))
        self.home.chmod(0o711)
        self.port, self.pg_port, self.workers = free_port(), free_port(), workers
        self.admin = ("admin", secrets.token_urlsafe(18))
        self.passwords: dict[str, str] = {self.admin[0]: self.admin[1]}
        self.proc: subprocess.Popen | None = None
        self.log = self.home / "serve.out"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 240) -> MlflowServer:
        """Start (or restart on the same ports and data); returns once the server answers."""
        if self.running:
            return self
        env = server_environment()
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin[1]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    "serve",
                    "--home",
                    str(self.home / "server"),
                    "--port",
                    str(self.port),
                    "--pg-port",
                    str(self.pg_port),
                    "--workers",
                    str(self.workers),
                    "--admin-user",
                    self.admin[0],
                    "--start-timeout",
                    str(timeout),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout + 30
        while "tracking URI:" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"deploy/server.py did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """SIGTERM, as systemd or Ctrl-C would; both services shut down cleanly."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def create_user(
        self, name: str | None = None, role: str = "searcher", password: str | None = None
    ) -> tuple[str, str]:
        """A new user: ``searcher`` writes experiments and the registry, ``reader`` only reads."""
        name = name or f"{role}-{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(18)
        with self.as_user(self.admin[0]):
            kit.create_user(self.uri, name, password, role)
        self.passwords[name] = password
        return name, password

    def env(self, user: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that tracks to this server as ``user`` (default: admin)."""
        user = user or self.admin[0]
        env = {
            k: v
            for k, v in (os.environ if base is None else base).items()
            if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
        }
        env.update(
            {
                "MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": self.passwords[user],
            }
        )
        return env

    @contextmanager
    def as_user(self, user: str | None = None) -> Iterator[MlflowServer]:
        """Track to this server as ``user`` in this process; the previous URI and credentials come back."""
        import mlflow

        saved = {k: os.environ.get(k) for k in CREDENTIAL_VARS}
        previous_uri = mlflow.get_tracking_uri()
        user = user or self.admin[0]
        os.environ.update(
            {
                "MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": self.passwords[user],
            }
        )
        mlflow.set_tracking_uri(self.uri)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            mlflow.set_tracking_uri(previous_uri)


_shared: MlflowServer | None = None


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest) -> Iterator[MlflowServer]:
    """One PostgreSQL-backed, basic-auth MLflow server for the session (started on first use)."""
    global _shared
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    if _shared is None:
        _shared = MlflowServer()
        request.addfinalizer(_shared.close)
    yield _shared.start()  # also brings it back if a test left it stopped
