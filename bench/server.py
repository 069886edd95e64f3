"""The default search tracked to the shared server (deploy/server.py: PostgreSQL, basic auth, proxied
artifacts, 2 workers, on this machine) vs to a local sqlite file: wall time of the same search,
alternating stores; every round, the medians, the spread and the median ratio. Also the CPU seconds the
server's processes (MLflow and PostgreSQL, read from /proc) spent during each server search: they share
the cores with the search. ``--profile`` also counts and times every REST call by endpoint. A search is
the command line (``hyperflow.cli.main``, what ``hyperflow search`` runs), so the bench needs no private name
of the package and runs against any version of it (``bench/before_after.py`` runs it with ``PYTHONPATH``
naming the version, on one server it starts for both: ``--uri``, the credentials in
MLFLOW_TRACKING_USERNAME/PASSWORD).

    python bench/server.py --max-evals 10 --rounds 3 --profile
    python bench/server.py --rounds 1 --json out.json      # also every number, machine-readable
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from services import MlflowServer

import hyperflow

# the command line, not the search's classes: bench/before_after.py runs this file against earlier
# versions of the package too (issue 24's base, db84cf3), where those classes differ
from hyperflow.cli import main as hyperflow_command

CALLS: dict[str, list[float]] = defaultdict(list)


def search(max_evals: int, experiment: str, parallelism: str | None = None) -> float:
    """``hyperflow search max_evals=N`` with every other setting at its default (best model registered); its
    output kept out of sight."""
    argv = ["search", f"max_evals={max_evals}", f"model_name={experiment}", "progress=false"]
    argv += [f"experiment={experiment}", *([f"parallelism={parallelism}"] if parallelism else [])]
    output = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(output):
        code = hyperflow_command(argv)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"hyperflow {' '.join(argv)}: exit {code}\n{output.getvalue()[-3000:]}")
    return wall


@contextmanager
def tracking_to(uri: str) -> Iterator[None]:
    """This process tracks to ``uri`` (the credentials stay as the environment has them)."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@contextmanager
def timed_requests() -> Iterator[None]:
    """Time each REST call (tracking, registry and artifact proxy) by method and endpoint."""
    import mlflow.store.artifact.http_artifact_repo as artifacts
    import mlflow.utils.rest_utils as rest

    original = rest.http_request

    def timed(host_creds, endpoint, method, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(host_creds, endpoint, method, *args, **kwargs)
        finally:
            key = endpoint if endpoint.startswith("/api/") else "(one artifact file, through the proxy)"
            CALLS[f"{method} {key}"].append(time.perf_counter() - start)

    rest.http_request = artifacts.http_request = timed
    try:
        yield
    finally:
        rest.http_request = artifacts.http_request = original


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of process ``root`` and all its descendants, those reaped included."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            stats[int(entry)] = fields
            children[int(fields[1])].append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            utime, stime, cutime, cstime = (int(x) for x in stats[pid][11:15])
            total += (utime + stime + cutime + cstime) / tick
        todo += children.get(pid, [])
    return total


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"min-max {min(values):.2f}-{max(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def report_calls(searches: int) -> None:
    total = sum(sum(v) for v in CALLS.values())
    count = sum(len(v) for v in CALLS.values())
    print(
        f"\nREST calls per search ({searches} searches), by total time ({count / searches:.0f} calls, "
        f"{total / searches:.2f} s per search, in any thread):"
    )
    for key, times in sorted(CALLS.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"  {len(times) / searches:6.1f} x {1000 * statistics.median(times):6.1f} ms = "
            f"{sum(times) / searches:6.2f} s  {key}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-evals", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of sqlite and server")
    parser.add_argument("--parallelism", default=None, help="the search's parallelism (default: its default)")
    parser.add_argument("--profile", action="store_true", help="count and time each REST call by endpoint")
    parser.add_argument("--uri", help="a running server to use (credentials: MLFLOW_TRACKING_USERNAME/PASSWORD)")
    parser.add_argument("--server-pid", type=int, help="with --uri: the server's process, for its CPU seconds")
    parser.add_argument("--prefix", default="", help="before every experiment and model name (a shared server)")
    parser.add_argument("--json", type=Path, help="also write every round's numbers to this file")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {hyperflow.__file__}", flush=True)
    server = None
    if args.uri:
        uri, pid = args.uri, args.server_pid
    else:
        server = MlflowServer(workers=2).start()
        uri, pid = server.uri, server.proc.pid
        user, password = server.admin
        os.environ.update({"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password})
    print(f"server {uri} up; {args.rounds} rounds of a {args.max_evals}-trial default search", flush=True)
    times: dict[str, list[float]] = {"sqlite": [], "server": []}
    server_cpu: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = f"sqlite:///{tmp}/mlflow.db"
            for store in (sqlite, uri):  # imports, schema
                with tracking_to(store):
                    search(2, f"{args.prefix}warmup", args.parallelism)
            for i in range(args.rounds):
                order = ("sqlite", "server") if i % 2 == 0 else ("server", "sqlite")
                name = f"{args.prefix}bench-{i}"
                for store in order:
                    if store == "sqlite":
                        with tracking_to(sqlite):
                            times[store].append(search(args.max_evals, name, args.parallelism))
                    else:
                        cpu = tree_cpu_seconds(pid) if pid else float("nan")
                        with tracking_to(uri), timed_requests() if args.profile else _nothing():
                            times[store].append(search(args.max_evals, name, args.parallelism))
                        server_cpu.append(tree_cpu_seconds(pid) - cpu if pid else float("nan"))
                print(
                    f"round {i + 1} ({order[0]} first): sqlite {times['sqlite'][-1]:.2f} s, server "
                    f"{times['server'][-1]:.2f} s (server processes' CPU {server_cpu[-1]:.2f} s), ratio "
                    f"{times['server'][-1] / times['sqlite'][-1]:.3f}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.close()
    ratios = [b / a for a, b in zip(times["sqlite"], times["server"])]
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for store, values in times.items():
        print(f"  {store:7s} median {statistics.median(values):6.2f} s  ({spread(values)})")
    print(
        f"  server processes' CPU during a server search: median {statistics.median(server_cpu):.2f} s "
        f"({spread(server_cpu)})"
    )
    print(f"  per-round ratios {', '.join(f'{r:.3f}' for r in ratios)}  ({spread(ratios)})")
    print(f"ratio server / sqlite: {statistics.median(ratios):.3f}  (median of the rounds)")
    if args.profile:
        report_calls(args.rounds)
    if args.json:
        numbers = {"sqlite_s": times["sqlite"], "server_s": times["server"], "ratio": ratios}
        numbers |= {"server_cpu_s": server_cpu}
        args.json.write_text(json.dumps({"hyperflow": hyperflow.__file__, "max_evals": args.max_evals, **numbers}))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
