"""Bench numbers before and after a change, in one run: the same measuring code against two checkouts of
the package (``--base``: before, ``--head``: after), side by side, in alternating rounds on one machine.

Each side runs in its own processes with ``PYTHONPATH=<checkout>/src`` (it wins over the virtual
environment's editable install; the package each side imports is printed and checked). The measuring code
is the same for both: the bench scripts next to this file (``--head .``: the head's), whatever the base's own
copies say. Three measurements:

- ``default_job``: the README's main job, ``python -m hyperflow search progress=false`` with the shipped
  defaults (what ``mlflow run . -e search`` runs: digits, 30 trials, TPE, median pruning, best model
  registered) in a fresh folder with its own sqlite store; the whole process's wall time.
- ``one_at_a_time_job``: the same job with ``parallelism=1`` (every trial in the search's own process).
- ``search_overhead``: ``bench/search_overhead.py --rounds 1`` (30 trials, one at a time): the tracked
  search, the untracked trials and their ratio.
- ``scale``: ``bench/suite_scale.py --no-profile`` (``suite.py --scale``: 1,000 trials of a trivial objective,
  ``parallelism=1`` and ``auto``, beside Optuna 5 + RDB sqlite): ms per trial outside the objective, trials 1-100
  and 901-1,000 (means), and each search's total seconds.
- ``server``: ``bench/server.py --rounds 1`` (a 10-trial default search to sqlite and to a PostgreSQL-backed
  ``mlflow server``): both times and their ratio. One server, started here, serves both sides (each its own
  experiments and models).

In round ``r`` each measurement runs once per side, adjacent (they share the machine's load), base first
in odd rounds and head first in even ones. Every round is printed, then per number the median and spread
(min-max) of each side and the head/base ratio of the medians (all numbers are seconds or ratios of
seconds: lower is better). **Verdict rule**: a number is *no worse* when the head/base ratio of medians is
<= 1.05, or when the head's median lies within the base's rounds' spread (<= the base's slowest round:
no larger than the round-to-round noise); a measurement is no worse when all its numbers are. Exit 1 when
one is worse. ``--quick`` (a smoke run: fewer trials) only checks that everything runs: its numbers are
not the bench's.

    python bench/before_after.py --base /work/base --head .                # ~10-11 min on 2 idle cores
    python bench/before_after.py --base /work/base --head . --quick --rounds 1 --only default_job,server
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOLERANCE = 1.05
MEASUREMENTS = ("default_job", "one_at_a_time_job", "search_overhead", "server")  # the default; also: scale
# seconds one side's run takes on 2 idle cores (shipped settings, --quick), for the estimate at the start
# (docs/benchmarks.md's idle numbers: a default job ~17 s; 30 tracked + 30 untracked trials ~23 s; two
# 10-trial searches ~13 s; plus each process's imports and warm-up searches)
COST_S = {
    "default_job": (20, 12),
    "one_at_a_time_job": (24, 12),
    "search_overhead": (32, 14),
    "server": (24, 16),
    "scale": (300, 30),
}
SERVER_START_S = 20
TIMEOUT_S = 1800


@dataclass(frozen=True)
class Side:
    """One checkout of the project, measured through its ``src/``."""

    name: str
    checkout: Path

    @property
    def src(self) -> Path:
        return self.checkout / "src"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This process's environment without MLflow's variables, its package first on the path."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTHONPATH"}
        return env | {"PYTHONPATH": str(self.src)} | (extra or {})

    def check_package(self, path: str) -> None:
        """Refuse numbers measured on another copy of the package than this side's."""
        if not Path(path).resolve().is_relative_to(self.src.resolve()):
            raise SystemExit(f"{self.name}: measured hyperflow from {path}, not from {self.src}")

    def describe(self) -> str:
        """The checkout's commit (and whether it has changes), and the package its processes import."""
        git = ["git", "-C", str(self.checkout)]
        commit = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout
        probe = [sys.executable, "-c", "import hyperflow; print(hyperflow.__file__)"]
        package = run(probe, self.env(), Path.cwd()).stdout.strip()
        self.check_package(package)
        changes = " + uncommitted changes in src/" if dirty.strip() else ""
        return f"{self.checkout}: {commit.strip()[:90]}{changes}; imports {package}"


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def run_bench(side: Side, script: str, args: list[str], extra_env: dict[str, str] | None = None) -> dict:
    """One run of a bench script for ``side``, in a fresh folder; the numbers it wrote (``--json``)."""
    with tempfile.TemporaryDirectory(prefix="hyperflow-bench-") as tmp:
        out = Path(tmp, "numbers.json")
        run([sys.executable, str(BENCH / script), *args, "--json", str(out)], side.env(extra_env), Path(tmp))
        numbers = json.loads(out.read_text())
    side.check_package(numbers["hyperflow"])
    return numbers


def default_job(side: Side, quick: bool, server: Any, round_: int, *settings: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hyperflow-job-") as tmp:
        env = side.env({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"})
        command = [sys.executable, "-m", "hyperflow", "search", "progress=false", *settings]
        command += ["max_evals=6"] if quick else []
        start = time.perf_counter()
        run(command, env, Path(tmp))
        return {"wall_s": time.perf_counter() - start}


def one_at_a_time_job(side: Side, quick: bool, server: Any, round_: int) -> dict[str, float]:
    return default_job(side, quick, server, round_, "parallelism=1")


def search_overhead(side: Side, quick: bool, server: Any, round_: int) -> dict[str, float]:
    numbers = run_bench(side, "search_overhead.py", ["--rounds", "1", "--trials", "6" if quick else "30"])
    return {key: numbers[key][0] for key in ("tracked_s", "untracked_s", "ratio")}


def server_search(side: Side, quick: bool, server: Any, round_: int) -> dict[str, float]:
    assert server is not None
    args = ["--rounds", "1", "--max-evals", "4" if quick else "10", "--uri", server.uri]
    args += ["--server-pid", str(server.proc.pid), "--prefix", f"{side.name}{round_}-"]
    user, password = server.admin
    numbers = run_bench(
        side, "server.py", args, {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    )
    return {key: numbers[key][0] for key in ("sqlite_s", "server_s", "ratio")}


def scale(side: Side, quick: bool, server: Any, round_: int) -> dict[str, float]:
    trials = "100" if quick else "1000"
    numbers = run_bench(side, "suite_scale.py", ["--no-profile", "--rounds", "1", "--trials", trials])
    searches, windows = ("p1", "auto", "optuna"), ("early_ms", "late_ms", "total_s")
    return {f"{search}_{window}": numbers[f"{search}_{window}"] for search in searches for window in windows}


# each: (side, quick, the server (tests/services.MlflowServer) or None, round) -> its numbers
MEASURE: dict[str, Callable[[Side, bool, Any, int], dict[str, float]]] = {
    "default_job": default_job,
    "one_at_a_time_job": one_at_a_time_job,
    "search_overhead": search_overhead,
    "server": server_search,
    "scale": scale,
}


def start_server() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from services import MlflowServer, postgres_missing

    if reason := postgres_missing():
        raise SystemExit(f"server: {reason} (leave it out: --only default_job,search_overhead)")
    return MlflowServer(workers=2).start()


def summary(name: str, rounds: list[dict[str, dict[str, float]]]) -> bool:
    """Median, spread and head/base ratio of each of a measurement's numbers; whether all are no worse."""
    print(f"{name}:")
    ok = True
    for key in rounds[0]["base"]:
        base, head = ([r[side][key] for r in rounds] for side in ("base", "head"))
        ratio = statistics.median(head) / statistics.median(base)
        fine = ratio <= TOLERANCE or statistics.median(head) <= max(base)
        ok &= fine
        print(
            f"  {key:<12} base {statistics.median(base):8.3f} ({min(base):.3f}-{max(base):.3f})  "
            f"head {statistics.median(head):8.3f} ({min(head):.3f}-{max(head):.3f})  "
            f"head/base {ratio:.3f}  {'no worse' if fine else 'WORSE'}"
        )
    print(f"  verdict {name}: {'no worse' if ok else 'WORSE'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--head", type=Path, required=True, help="checkout after it (usually .)")
    parser.add_argument("--rounds", type=int, default=4, help="alternations (even: each side first as often)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated, of " + ", ".join(MEASURE))
    parser.add_argument("--quick", action="store_true", help="smoke run: few trials (numbers not comparable)")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.only.split(",") if m.strip()]
    if unknown := [m for m in chosen if m not in MEASURE]:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(MEASURE)}")
    sides = (Side("base", args.base.resolve()), Side("head", args.head.resolve()))
    for side in sides:
        print(f"{side.name}: {side.describe()}", flush=True)
    estimate = sum(2 * args.rounds * COST_S[m][args.quick] for m in chosen) + SERVER_START_S * ("server" in chosen)
    print(
        f"{args.rounds} rounds of {', '.join(chosen)}{' (--quick)' if args.quick else ''}: estimated "
        f"{estimate / 60:.0f} min on 2 idle cores (longer on a loaded machine); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores",
        flush=True,
    )
    results: dict[str, list[dict[str, dict[str, float]]]] = {m: [] for m in chosen}
    began = time.perf_counter()
    server = start_server() if "server" in chosen else None
    if server is not None:
        print(f"server {server.uri} up in {time.perf_counter() - began:.0f} s", flush=True)
    start = time.perf_counter()
    try:
        for r in range(1, args.rounds + 1):
            order = sides if r % 2 else sides[::-1]
            for m in chosen:
                numbers = {side.name: MEASURE[m](side, args.quick, server, r) for side in order}
                results[m].append(numbers)
                shown = "; ".join(
                    f"{key} base {numbers['base'][key]:.3f} head {numbers['head'][key]:.3f}" for key in numbers["base"]
                )
                print(f"round {r} ({order[0].name} first) {m:<15} {shown}  (load {os.getloadavg()[0]:.2f})", flush=True)
            elapsed = time.perf_counter() - start
            print(f"  {elapsed / 60:.1f} min so far, ~{elapsed / r * (args.rounds - r) / 60:.1f} min to go", flush=True)
    finally:
        if server is not None:
            server.close()
    print(
        f"\n{args.rounds} rounds in {(time.perf_counter() - began) / 60:.1f} min (server start included); load "
        f"average at the end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    verdicts = {m: summary(m, rounds) for m, rounds in results.items()}
    worse = [m for m, ok in verdicts.items() if not ok]
    rule = f"head/base of medians <= {TOLERANCE} or head's median within the base's spread"
    print(f"verdict: {'no worse' if not worse else 'WORSE: ' + ', '.join(worse)} ({rule})")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
