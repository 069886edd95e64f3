"""The default search tracked to the shared server (deploy/server.py: PostgreSQL, basic auth, proxied
artifacts, 2 workers, on this machine) vs to a local sqlite file: wall time of the same search,
alternating stores, median ratio. ``--profile`` also times every REST call by endpoint.

    python bench/server.py --max-evals 10 --rounds 3 --profile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from services import MlflowServer  # noqa: E402

from hyperflow.config import build_config  # noqa: E402
from hyperflow.config.search import build_search_config  # noqa: E402
from hyperflow.search.runner import SearchRunner  # noqa: E402

CALLS: dict[str, list[float]] = defaultdict(list)


def search(max_evals: int, experiment: str) -> float:
    """``hyperflow search max_evals=N`` with every other setting at its default (best model registered)."""
    settings = build_search_config({"max_evals": str(max_evals), "model_name": experiment})
    base = build_config({"progress": "false", "experiment": experiment})
    start = time.perf_counter()
    SearchRunner(settings, base).run()
    return time.perf_counter() - start


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


def report_calls(searches: int) -> None:
    total = sum(sum(v) for v in CALLS.values())
    print(f"\nREST calls per search ({searches} searches), by total time ({total / searches:.2f} s per search):")
    for key, times in sorted(CALLS.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {len(times) / searches:6.1f} x {1000 * statistics.median(times):6.1f} ms = "
              f"{sum(times) / searches:6.2f} s  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-evals", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of sqlite and server")
    parser.add_argument("--profile", action="store_true", help="time each REST call by endpoint")
    args = parser.parse_args()
    server = MlflowServer(workers=2)
    server.start()
    print(f"server {server.uri} up; {args.rounds} rounds of a {args.max_evals}-trial default search", flush=True)
    times: dict[str, list[float]] = {"sqlite": [], "server": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = f"sqlite:///{tmp}/mlflow.db"
            mlflow.set_tracking_uri(sqlite)
            search(2, "warmup")  # imports, schema
            with server.as_user():
                search(2, "warmup")
            for i in range(args.rounds):
                order = ("sqlite", "server") if i % 2 == 0 else ("server", "sqlite")
                for store in order:
                    if store == "sqlite":
                        mlflow.set_tracking_uri(sqlite)
                        times[store].append(search(args.max_evals, f"bench-{i}"))
                    else:
                        with server.as_user(), (timed_requests() if args.profile else _nothing()):
                            times[store].append(search(args.max_evals, f"bench-{i}"))
                print(f"round {i + 1}: sqlite {times['sqlite'][-1]:.1f} s, server {times['server'][-1]:.1f} s",
                      flush=True)
    finally:
        server.close()
    sqlite_s, server_s = statistics.median(times["sqlite"]), statistics.median(times["server"])
    ratios = [b / a for a, b in zip(times["sqlite"], times["server"])]
    print(f"\nmedian wall time: sqlite {sqlite_s:.1f} s, server {server_s:.1f} s; ratio {server_s / sqlite_s:.2f}x "
          f"(per round {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.profile:
        report_calls(args.rounds)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
