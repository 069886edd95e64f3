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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
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
