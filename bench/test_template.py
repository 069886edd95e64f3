"""What the tests' warm command template (tests/forked.py) buys: the same test files run with commands forked
from the template (as shipped) and with every command a fresh ``python -m hyperflow`` (``HYPERFLOW_TEST_FRESH=1``),
in alternating rounds on one machine. Printed per round: each side's wall seconds and CPU seconds of the whole
process tree (pytest, the template, the commands and what they start), then the medians, the spread and the
fresh / template ratio of the medians.

    python bench/test_commands.py --rounds 3                                  # the default files, -n 2
    python bench/test_commands.py --rounds 2 tests/test_store_at_start.py      # any test files
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_store_at_start.py", "tests/test_store_faults_commands.py", "tests/test_signals_at_end.py"]


def one_run(files: list[str], fresh: bool) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m pytest -q <files>`` (its whole process tree, once it has exited)."""
    env = {**os.environ, "HYPERFLOW_TEST_FRESH": "1" if fresh else "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed (fresh={fresh}):\n{proc.stdout[-3000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=FILES)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides: dict[str, list[tuple[float, float]]] = {"template": [], "fresh": []}
    for r in range(args.rounds):
        order = ["template", "fresh"] if r % 2 == 0 else ["fresh", "template"]
        for side in order:
            wall, cpu = one_run(args.files, fresh=side == "fresh")
            sides[side].append((wall, cpu))
            print(f"round {r + 1} {side:8s} wall {wall:7.1f} s  cpu {cpu:7.1f} s", flush=True)
    for i, what in enumerate(("wall", "cpu")):
        med = {side: statistics.median(v[i] for v in values) for side, values in sides.items()}
        spread = {side: (min(v[i] for v in values), max(v[i] for v in values)) for side, values in sides.items()}
        print(
            f"{what}: template {med['template']:.1f} s ({spread['template'][0]:.1f}-{spread['template'][1]:.1f}), "
            f"fresh {med['fresh']:.1f} s ({spread['fresh'][0]:.1f}-{spread['fresh'][1]:.1f}), "
            f"fresh / template {med['fresh'] / med['template']:.2f}"
        )


if __name__ == "__main__":
    main()
