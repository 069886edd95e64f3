#!/usr/bin/env python3
"""A shared MLflow tracking server on one machine: PostgreSQL + ``mlflow server`` with basic auth.

    export MLFLOW_AUTH_ADMIN_PASSWORD='a long secret'      # the admin's password, never a default
    python deploy/server.py serve --home /var/lib/hyperflow-server --port 5000

starts a PostgreSQL cluster of its own (data in HOME/postgres, listening on 127.0.0.1 only) holding
the tracking store (database ``mlflow``) and the users (database ``mlflow_auth``), then
``mlflow server --app-name basic-auth`` with artifacts proxied to HOME/artifacts (or
``--artifacts-destination s3://...``). It prints the tracking URI and runs in the foreground;
Ctrl-C or SIGTERM stop both cleanly (exit 0). Run it again with the same HOME to restart on the same
data.

    python deploy/server.py add-user NAME --role reader|searcher --tracking-uri URI

creates a user (the admin's credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD, the new user's
password from HYPERFLOW_USER_PASSWORD or a prompt). Every user reads everything (default permission
READ); a ``searcher`` may also create and write experiments and registered models; a ``reader`` may
change nothing. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
DATABASES = ("mlflow", "mlflow_auth")
ROLES = ("reader", "searcher")


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


# ---------------------------------------------------------------- checks


def find_postgres_bin(explicit: str | None) -> Path:
    if explicit:
        candidates = [explicit]
    else:
        on_path = shutil.which("initdb")
        candidates = ([str(Path(on_path).parent)] if on_path else []) + sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
        )
    for folder in candidates:
        if Path(folder, "initdb").is_file() and Path(folder, "postgres").is_file():
            return Path(folder)
    raise UsageError(
        "PostgreSQL binaries not found (initdb, postgres): install them (Debian: "
        "apt-get install postgresql) or pass --postgres-bin /usr/lib/postgresql/<version>/bin"
    )


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"{what} port {host}:{port} is not free ({exc.strerror}): stop what uses it "
                f"or choose another with --{'pg-port' if what == 'PostgreSQL' else 'port'}"
            ) from exc


def admin_password() -> str:
    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        raise UsageError(
            f"{ADMIN_PASSWORD_ENV} is not set: export {ADMIN_PASSWORD_ENV}='<12+ characters>' "
            "(the admin user's password; there is no default)"
        )
    if len(password) < 12:
        raise UsageError(f"{ADMIN_PASSWORD_ENV} is too short: MLflow wants at least 12 characters")
    return password


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A private cluster in ``folder``, run as the ``postgres`` user when we are root."""

    def __init__(self, folder: Path, bin_dir: Path, port: int) -> None:
        self.data, self.bin, self.port = folder, bin_dir, port
        self.password_file = folder.parent / "postgres-password"
        self.proc: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise UsageError(
                    "running as root needs a 'postgres' user to run PostgreSQL as: install "
                    "Debian's postgresql package or run this script as an ordinary user"
                ) from None

    def _run_as(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def init(self) -> None:
        """initdb once: superuser ``mlflow`` with a random password (kept in HOME, mode 600)."""
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.data.parent / "postgres-password.init"  # initdb wants an empty folder
        pwfile.write_text(self.password() + "\n")
        pwfile.chmod(0o600)
        if self.user is not None:
            for path in (self.data, pwfile):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
            probe = subprocess.run(["test", "-w", str(self.data)], **self._run_as())
            if probe.returncode:
                raise UsageError(
                    f"the postgres user cannot reach {self.data}: choose a --home that every "
                    "user may traverse (e.g. /var/lib/hyperflow-server)"
                )
        try:
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "mlflow",
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                text=True,
                **self._run_as(),
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, log: Path) -> None:
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as(),
            )
        deadline = time.monotonic() + 60
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with code {self.proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start within 60 s; see {log}")
            time.sleep(0.1)
        self.create_databases()

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user="mlflow",
            password=self.password(),
            dbname=database,
            connect_timeout=2,
        )

    def ready(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def create_databases(self) -> None:
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def uri(self, database: str) -> str:
        """No password in the URI: the server finds it in PGPASSFILE, so it never shows in ``ps``."""
        return f"postgresql+psycopg2://mlflow@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, checkpoint, exit
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- MLflow server


def write_auth_config(home: Path, pg: Postgres, admin_user: str) -> Path:
    path = home / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "# every user reads everything; writes need a grant (see deploy/server.py add-user)\n"
        "default_permission = READ\n"
        f"database_uri = {pg.uri('mlflow_auth')}\n"
        f"admin_username = {admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "# a password check costs a scrypt hash (0.1-0.4 s of CPU); remember good ones for 60 s per\n"
        "# worker (a changed or deleted password may keep working that long on other workers)\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    return path


def write_pgpass(home: Path, pg: Postgres) -> Path:
    path = home / "pgpass"
    path.write_text(f"127.0.0.1:{pg.port}:*:mlflow:{pg.password()}\n")
    path.chmod(0o600)
    return path


def secret_key(home: Path) -> str:
    """The key that signs the UI's CSRF tokens: made once, kept in HOME (mode 600), same for every worker."""
    path = home / "flask-secret-key"
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not answer within {timeout:.0f} s; see {log}")
        time.sleep(0.2)


def mlflow_command(args: argparse.Namespace, pg: Postgres, artifacts: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        pg.uri("mlflow"),
        "--artifacts-destination",
        artifacts,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
        # a worker still importing on a busy machine must not be taken for dead (uvicorn's 5 s)
        "--uvicorn-opts",
        "--timeout-worker-healthcheck 60 --timeout-graceful-shutdown 20",
    ]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    if args.cors_allowed_origins:
        command += ["--cors-allowed-origins", args.cors_allowed_origins]
    return command


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the server's process group (its workers too), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def serve(args: argparse.Namespace) -> int:
    password = admin_password()
    bin_dir = find_postgres_bin(args.postgres_bin)
    check_port_free(args.host, args.port, "mlflow server")
    check_port_free("127.0.0.1", args.pg_port, "PostgreSQL")
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    artifacts = args.artifacts_destination or str(home / "artifacts")
    pg = Postgres(home / "postgres", bin_dir, args.pg_port)
    server: subprocess.Popen | None = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        pg.init()
        pg.start(home / "logs" / "postgres.log")
        env = {
            **os.environ,
            "PGPASSFILE": str(write_pgpass(home, pg)),
            "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(home, pg, args.admin_user)),
            ADMIN_PASSWORD_ENV: password,
            "MLFLOW_AUTH_ADMIN_USERNAME": args.admin_user,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secret_key(home),
            # the GenAI job runner (5 extra processes, slow start and stop) serves nothing hyperflow uses
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
        }
        log = home / "logs" / "mlflow.log"
        with log.open("ab") as out:
            server = subprocess.Popen(
                mlflow_command(args, pg, artifacts),
                env=env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        url = f"http://{shown}:{args.port}"
        wait_healthy(url, server, args.start_timeout, log)
        print(
            f"tracking URI: {url}  (admin user '{args.admin_user}'; artifacts in {artifacts}; logs in {home / 'logs'})",
            flush=True,
        )
        while not stopping:
            if server.poll() is not None or (pg.proc and pg.proc.poll() is not None):
                print(f"deploy/server.py: a service exited unexpectedly; see {home / 'logs'}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server is not None:
            stop_group(server)
        pg.stop()
        if stopping:
            print("stopped", flush=True)


# ---------------------------------------------------------------- users


def add_user(args: argparse.Namespace) -> int:
    import getpass

    if not (os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        raise UsageError("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to the admin's credentials")
    password = os.environ.get("HYPERFLOW_USER_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
    if len(password) < 12:
        raise UsageError("the new user's password is too short: MLflow wants at least 12 characters")
    from mlflow.exceptions import MlflowException

    try:
        create_user(args.tracking_uri, args.name, password, args.role)
    except MlflowException as exc:
        if "UNIQUE" in str(exc).upper() or "already exists" in str(exc):
            raise UsageError(f"user '{args.name}' exists already") from None
        raise UsageError(f"{args.tracking_uri} refused: {str(exc).splitlines()[0][:300]}") from None
    print(f"user '{args.name}' created as {args.role}")
    return 0


def create_user(tracking_uri: str, name: str, password: str, role: str) -> None:
    """A user who reads everything (the server's default permission); a searcher is also given EDIT on
    every experiment and registered model, which lets it create runs, register versions and move
    aliases. Admin credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    from mlflow.server import get_app_client

    client = get_app_client("basic-auth", tracking_uri=tracking_uri)
    client.create_user(name, password)
    if role == "searcher":
        role_id = searcher_role(client)
        client.assign_role(name, role_id)


def searcher_role(client) -> int:
    existing = {r.name: r.id for r in client.list_roles("default")}
    if "searcher" in existing:
        return existing["searcher"]
    role = client.create_role("default", "searcher", "runs searches: writes experiments and the registry")
    client.add_role_permission(role.id, "workspace", "*", "USE")
    for resource in ("experiment", "registered_model"):
        client.add_role_permission(role.id, resource, "*", "EDIT")
    return role.id


# ---------------------------------------------------------------- command line


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy/server.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start PostgreSQL and mlflow server; Ctrl-C / SIGTERM stop both")
    s.add_argument("--home", default="hyperflow-server", help="folder for data, logs and config")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL port (always on 127.0.0.1)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--allowed-hosts", help="Host headers to accept, e.g. mlflow.example.org,10.0.0.7:5000")
    s.add_argument("--cors-allowed-origins", help="origins of web apps that may call the server")
    s.add_argument(
        "--artifacts-destination",
        help="where proxied artifacts go (default HOME/artifacts; s3://bucket/prefix with boto3 and AWS credentials)",
    )
    s.add_argument("--admin-user", default="admin")
    s.add_argument(
        "--postgres-bin", help="folder with initdb and postgres (default: PATH, then /usr/lib/postgresql/<newest>/bin)"
    )
    s.add_argument("--start-timeout", type=float, default=120)
    u = sub.add_parser("add-user", help="create a user (admin credentials from MLFLOW_TRACKING_USERNAME/PASSWORD)")
    u.add_argument("name")
    u.add_argument("--role", choices=ROLES, required=True)
    u.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return serve(args) if args.command == "serve" else add_user(args)
    except UsageError as exc:
        print(f"deploy/server.py: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"deploy/server.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
