"""A search against a slow or refusing tracking server: the real server of deploy/server.py behind a small
HTTP proxy written here (threads and sockets), which delays every request or refuses some writes. The
search's calls that go out in the background (creating a trial's run, its results, its end) must all arrive
when the server is slow, and a refused one must stop the search with its one line and exit code 1,
leaving no trial marked wrongly."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from mlflow import MlflowClient
from services import mlflow_server  # noqa: F401  (fixture)
from test_server import assert_complete, runs_of, search

pytestmark = pytest.mark.integration  # every test here starts processes

HOP_BY_HOP = {
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}
# decides from (method, path, how many such requests so far) whether the proxy refuses a request
Refuse = Callable[[str, str, int], bool]


class Proxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` (tracking calls after ``delay`` seconds), or answers 403 PERMISSION_DENIED
    (what a server that refuses a write answers; MLflow does not retry it) where ``refuse`` says so."""

    daemon_threads = True

    def __init__(self, upstream: str, delay: float = 0.0, refuse: Refuse | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.delay, self.refuse = upstream, delay, refuse
        self.counts: Counter[tuple[str, str]] = Counter()
        self.refused: list[str] = []
        self.lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Proxy:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body, proxy = self._body(), self.server
        path = self.path.split("?")[0]
        with proxy.lock:
            proxy.counts[self.command, path] += 1
            refused = proxy.refuse is not None and proxy.refuse(self.command, path, proxy.counts[self.command, path])
            if refused:
                proxy.refused.append(f"{self.command} {path}")
        if "/mlflow-artifacts/" not in path:  # the tracking calls are under test, not the model's files
            time.sleep(proxy.delay)  # the slow server under test, not a wait for something to happen
        if refused:
            status, headers = 403, {"Content-Type": "application/json"}
            content = json.dumps({"error_code": "PERMISSION_DENIED", "message": "refused by the test's proxy"}).encode()
        else:
            sent = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = requests.request(
                self.command,
                proxy.upstream + self.path,
                data=body,
                timeout=300,
                headers={**sent, "Accept-Encoding": "identity"},
                allow_redirects=False,
            )
            status, content = answer.status_code, answer.content
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def searcher(mlflow_server):
    return mlflow_server.create_user(role="searcher")[0]


def proxied_search(server, user: str, proxy: Proxy, folder, experiment: str, *settings: str):
    """``hyperflow search`` as a process, tracking through ``proxy``; one trial at a time in that process,
    so that its trials' calls go out on the search's background thread."""
    return search(
        server,
        user,
        folder,
        3,
        "max_evals=4",
        "strategy=random",
        "pruner=none",
        "parallelism=1",
        f"experiment={experiment}",
        f"model_name={experiment}",
        *settings,
        env={"MLFLOW_TRACKING_URI": proxy.uri},
    )


def test_every_trial_arrives_through_a_slow_server(mlflow_server, searcher, tmp_path):
    experiment = f"slow-{os.urandom(3).hex()}"
    with Proxy(mlflow_server.uri, delay=0.05) as proxy:  # each request waits longer than an epoch takes
        proc = proxied_search(mlflow_server, searcher, proxy, tmp_path, experiment)
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert proxy.counts["POST", "/api/2.0/mlflow/runs/create"] == 5  # the search and its four trials
    with mlflow_server.as_user():
        client = MlflowClient()
        parent, *children = assert_complete(client, experiment, trials=4, epochs=3)
        trials = sorted(children, key=lambda r: int(r.data.params["trial_number"]))
        for run in trials:  # start and end as they happened, though the calls went out later
            assert parent.info.start_time <= run.info.start_time < run.info.end_time <= parent.info.end_time
        for earlier, later in itertools.pairwise(trials):
            assert earlier.info.end_time <= later.info.start_time
        version = client.get_model_version_by_alias(experiment, "challenger")
        assert version.tags["search_run_id"] == parent.info.run_id


def trial_creates_after(allowed: int) -> Refuse:
    """Refuse every ``runs/create`` after the first ``allowed`` (the search's own run is the first)."""
    return lambda method, path, n: path.endswith("/mlflow/runs/create") and n > allowed


def trial_results_after(allowed: int) -> Refuse:
    """Refuse every ``runs/log-batch`` after the first ``allowed``; a trial's results go in one log-batch."""
    return lambda method, path, n: path.endswith("/mlflow/runs/log-batch") and n > allowed


@pytest.mark.parametrize(
    "refuse, what",
    [(trial_creates_after(3), "creating the third trial's run"), (trial_results_after(3), "a trial's results")],
)
def test_a_refused_write_stops_the_search_in_one_line(mlflow_server, searcher, tmp_path, refuse, what):
    experiment = f"refused-{os.urandom(3).hex()}"
    with Proxy(mlflow_server.uri, refuse=refuse) as proxy:
        proc = proxied_search(mlflow_server, searcher, proxy, tmp_path, experiment, "register=false")
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-3000:]
    assert proxy.refused, f"nothing was refused ({what})"
    last = out.strip().splitlines()[-1]
    assert last.startswith("hyperflow search: error:") and "PERMISSION_DENIED" in last and "resume=" in last, out[
        -3000:
    ]
    assert "Traceback" not in out, out[-3000:]
    with mlflow_server.as_user():
        parent, children = runs_of(MlflowClient(), experiment)
        assert parent.info.status == "KILLED"  # the store failed, not the search's code
        done = [c for c in children if c.info.status == "FINISHED"]
        assert done and len(done) < 4
        for child in children:  # finished with all its results, or visibly not finished
            if child.info.status == "FINISHED":
                assert child.data.tags["hyperflow.trial_status"] == "ok" and "best_val_loss" in child.data.metrics
                assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            else:
                assert child.info.status in ("RUNNING", "KILLED") and "hyperflow.trial_status" not in child.data.tags
