"""Time to the first error line for bad input: whole `hyperflow` processes, this checkout alone or against an
earlier commit (checked out in a temporary git worktree), alternating, several rounds.

    python bench/first_error.py --rounds 7                      # this checkout only
    python bench/first_error.py --before <commit> --rounds 7    # and an earlier commit, alternating
    python bench/first_error.py --only "wrong task" --only "no space" --only "unknown"   # some cases only

Cases: bad data (a CSV whose target column does not exist, a binary file given as a CSV, a wrong target on
`search`) and every other input that needs only a file, the space or the store (a space file with an
invalid dimension, one that is not YAML, one that does not exist, `resume=` an id the store does not hold, a
`task=` the target cannot have, a model function that does not exist, a config file that does not exist).
Each must be refused before torch is imported and before a worker starts: seconds. Each round runs every
case once per side (order alternating); the whole process is timed (it exits right after printing the
error). Prints the load average, every round, the median and the spread of the wall-clock time and of the CPU
time of the command's process (user + system, its children included: what load does not inflate), and the ratio
after / before of the medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases(folder: Path) -> dict[str, list[str]]:
    table = folder / "houses.csv"
    table.write_text(
        "rooms,area,city,price\n" + "".join(f"{i % 5},{50 + i},{'ab'[i % 2]},{1000 + 7 * i}\n" for i in range(500))
    )
    binary = folder / "export.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    bad_space = folder / "bad_space.yaml"
    bad_space.write_text("lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}\nwidth: {type: gaussian, mu: 64}\n")
    not_yaml = folder / "not_yaml.yaml"
    not_yaml.write_text("lr: {type: uniform, low: [0.1\n")
    data = [f"data={table}", "target=price"]
    return {
        "train, missing target": ["train", f"data={table}", "target=prize"],
        "train, binary file": ["train", f"data={binary}", "target=price"],
        "search, missing target": ["search", f"data={table}", "target=prize"],
        "search, bad space file": ["search", *data, f"space={bad_space}"],
        "search, space not YAML": ["search", *data, f"space={not_yaml}"],
        "search, no space file": ["search", *data, f"space={folder / 'nowhere.yaml'}"],
        "search, unknown resume": ["search", "resume=0123456789abcdef0123456789abcdef"],
        "train, wrong task": ["train", f"data={table}", "target=city", "task=regression"],
        "search, wrong task": ["search", f"data={table}", "target=city", "task=regression"],
        "train, unknown model": ["train", *data, "model=no_such_package.models:net"],
        "search, unknown model": ["search", *data, "model=no_such_package.models:net"],
        "train, no config file": ["train", *data, f"config={folder / 'nowhere.yaml'}"],
    }


def cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run_once(src: Path, args: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """Wall-clock seconds, CPU seconds, exit code and hyperflow's line of one whole command."""
    env = {**os.environ, "PYTHONPATH": str(src), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    cpu, started = cpu_of_children(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hyperflow", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, cpu_of_children() - cpu
    lines = proc.stderr.strip().splitlines() or [""]
    first = next((line for line in lines if line.startswith("hyperflow")), lines[-1])  # else the traceback's end
    return wall, cpu, proc.returncode, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="commit to compare with (e.g. the parent of a change); default: none")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", action="append", help="run the cases whose name holds this (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        worktree = tmp_path / "before"
        if args.before:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                check=True,
                capture_output=True,
            )
        try:
            sides = {"before": worktree / "src", "after": ROOT / "src"} if args.before else {"after": ROOT / "src"}
            work = tmp_path / "work"
            work.mkdir()
            todo = {k: v for k, v in cases(work).items() if not args.only or any(o in k for o in args.only)}
            subprocess.run(
                [sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"],
                env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"},
                check=True,
                capture_output=True,
            )  # a store to look the unknown resume= up in
            print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")
            times: dict[tuple[str, str], list[float]] = {}
            cpus: dict[tuple[str, str], list[float]] = {}
            for name, argv in todo.items():  # warm the file cache and show what each side prints
                for side, src in sides.items():
                    seconds, cpu, code, first = run_once(src, argv, work)
                    print(f"{name:<24} {side:<6} {seconds:5.2f} s ({cpu:.2f} CPU-s) exit {code}: {first[:100]}")
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name, argv in todo.items():
                    for side in order:
                        seconds, cpu, _, _ = run_once(sides[side], argv, work)
                        times.setdefault((name, side), []).append(seconds)
                        cpus.setdefault((name, side), []).append(cpu)
            print(
                f"\n{args.rounds} rounds (seconds per whole process); load average now "
                f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
            )
            for name in todo:
                medians = {}
                for side in sides:
                    values = times[(name, side)]
                    medians[side] = statistics.median(values)
                    cpu = cpus[(name, side)]
                    print(
                        f"{name:<24} {side:<6} median {medians[side]:6.2f}  spread {min(values):.2f}-"
                        f"{max(values):.2f}  rounds {' '.join(f'{v:.2f}' for v in values)}  CPU-s median "
                        f"{statistics.median(cpu):.2f}  rounds {' '.join(f'{v:.2f}' for v in cpu)}"
                    )
                if args.before:
                    print(f"{name:<24} ratio after / before: {medians['after'] / medians['before']:.2f}")
        finally:
            if args.before:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True
                )


if __name__ == "__main__":
    main()
