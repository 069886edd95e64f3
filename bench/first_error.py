"""Time to the first error line for a bad data file: whole `hyperflow` processes, this checkout against an
earlier commit (checked out in a temporary git worktree), alternating, several rounds.

    python bench/first_error.py --before <commit> --rounds 7

Cases: a CSV whose target column does not exist, a binary file given as a CSV, a wrong target on
`search`. Each round runs every case once per side (order alternating); the whole process is timed
(it exits right after printing the error). Prints every round, the median and the spread, and the ratio
after / before of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases(folder: Path) -> dict[str, list[str]]:
    table = folder / "houses.csv"
    table.write_text("rooms,area,price\n" + "".join(f"{i % 5},{50 + i},{1000 + 7 * i}\n" for i in range(500)))
    binary = folder / "export.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    return {"train, missing target": ["train", f"data={table}", "target=prize"],
            "train, binary file": ["train", f"data={binary}", "target=price"],
            "search, missing target": ["search", f"data={table}", "target=prize"]}


def run_once(src: Path, args: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hyperflow", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    first = (proc.stderr.strip().splitlines() or [""])[0]
    return time.perf_counter() - started, proc.returncode, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="commit to compare with (e.g. the parent of a change)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        worktree = tmp_path / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        try:
            sides = {"before": worktree / "src", "after": ROOT / "src"}
            work = tmp_path / "work"
            work.mkdir()
            todo = cases(work)
            times: dict[tuple[str, str], list[float]] = {}
            for name, argv in todo.items():  # warm the file cache and show what each side prints
                for side, src in sides.items():
                    _, code, first = run_once(src, argv, work)
                    print(f"{name:<24} {side:<6} exit {code}: {first[:110]}")
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name, argv in todo.items():
                    for side in order:
                        seconds, _, _ = run_once(sides[side], argv, work)
                        times.setdefault((name, side), []).append(seconds)
            print(f"\n{args.rounds} rounds (seconds per whole process)")
            for name in todo:
                medians = {}
                for side in sides:
                    values = times[(name, side)]
                    medians[side] = statistics.median(values)
                    print(f"{name:<24} {side:<6} median {medians[side]:6.2f}  spread {min(values):.2f}-"
                          f"{max(values):.2f}  rounds {' '.join(f'{v:.2f}' for v in values)}")
                print(f"{name:<24} ratio after / before: {medians['after'] / medians['before']:.2f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)


if __name__ == "__main__":
    main()
