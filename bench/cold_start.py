"""Cold start: whole `hyperflow` processes against their floor, a process that only imports torch and MLflow.

    flock /tmp/hyperflow-bench.lock python bench/cold_start.py --rounds 5
    flock /tmp/hyperflow-bench.lock python bench/cold_start.py --rounds 5 --before <commit>   # also an earlier commit

Commands (each a new process, cwd and store in a temporary folder, ``PYTHONPATH`` = the side's ``src``):

- ``train, existing store``: ``hyperflow train data=digits epochs=1`` on a sqlite store that already holds
  runs: what a user meets on every command but the first in a folder;
- ``train, new store``: the same on a sqlite file that does not exist yet (MLflow creates its schema): the
  first command in a folder;
- ``predict``: ``hyperflow predict model=models:/coldstart/1 data=rows.csv`` on 100 digits rows (existing store);
- ``mlflow run``: ``mlflow run . -e train --env-manager local -P epochs=1`` (existing store), beside MLflow's
  own floor for it, ``python -c "import mlflow.cli"`` (the CLI's imports, outside hyperflow's reach);
- ``torch + MLflow + one optimizer step``: not hyperflow, the floor plus one ``torch.optim.Adam`` step, which
  imports ``torch._dynamo`` in torch 2.13 whatever the optimizer's flags: the part of a training command's
  gap to the floor that no training code using ``torch.optim`` can avoid.

Each round runs, per command and side, the floor and then the command (A/B, the order of the sides
alternating between rounds), and prints every time: wall seconds, and CPU seconds (user + system of the
process and its children), which other jobs on the machine disturb less. The summary has each command's median,
spread and
ratio to the floor's median, and the median of the per-round ratios. ``--breakdown`` then runs each
hyperflow command once more with a probe that splits the process into stages: interpreter start, imports
(all of them, wherever they happen), store initialisation (MLflow's SqlAlchemyStore constructors, without
their imports), training (``Trainer.fit``), model loading and scoring (predict), the rest of the command's
own work, and exit (``main`` returning → the process gone: atexit handlers, then interpreter teardown).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = [sys.executable, "-c", "import torch, mlflow"]
MLFLOW_FLOOR = [sys.executable, "-c", "import mlflow.cli"]
# not hyperflow: the floor plus one torch.optim step, which imports torch._dynamo in torch 2.13 whatever the
# optimizer's flags; what any process that trains with torch.optim pays over the floor
OPTIMIZER_STEP = [
    sys.executable,
    "-c",
    "import torch, mlflow; m = torch.nn.Linear(2, 2); "
    "o = torch.optim.Adam(m.parameters()); m(torch.ones(1, 2)).sum().backward(); o.step()",
]


# ---------------------------------------------------------------------------------------------- the probe


def probe(out: str, t0: float, argv: list[str]) -> None:
    """Run ``hyperflow.cli.main(argv)`` in this process, timing its stages; write them to ``out`` at exit."""
    import atexit
    import importlib._bootstrap as bootstrap
    import threading
    from time import perf_counter
    from time import time as now

    wall0 = perf_counter() - (now() - t0)  # the process's start on the perf_counter clock
    stats: dict[str, float] = {"import": 0.0, "store": 0.0, "training": 0.0, "model load + scoring": 0.0}
    claimed = [0.0]  # time already given to a stage or to imports: a stage inside another counts once
    marks: dict[str, float] = {}
    main_thread = threading.get_ident()
    depth = [0]
    original = bootstrap._find_and_load

    def stage(name: str, fn):
        def timed(*args, **kwargs):
            if threading.get_ident() != main_thread:
                return fn(*args, **kwargs)
            started, before = perf_counter(), claimed[0]
            try:
                return fn(*args, **kwargs)
            finally:
                own = perf_counter() - started - (claimed[0] - before)
                stats[name] += own
                claimed[0] += own

        return timed

    hooks = {  # module -> (object path, stage): wrapped as soon as the module is loaded
        "mlflow.store.tracking.sqlalchemy_store": [("SqlAlchemyStore.__init__", "store")],
        "mlflow.store.model_registry.sqlalchemy_store": [("SqlAlchemyStore.__init__", "store")],
        "hyperflow.core.trainer": [("Trainer.fit", "training")],
        "mlflow.pyfunc": [("load_model", "model load + scoring"), ("PyFuncModel.predict", "model load + scoring")],
    }

    def wrap(name: str, module) -> None:
        for path, stage_name in hooks.pop(name, ()):
            owner_path, _, attr = path.rpartition(".")
            owner = module
            for part in filter(None, owner_path.split(".")):
                owner = getattr(owner, part)
            setattr(owner, attr, stage(stage_name, getattr(owner, attr)))

    def find_and_load(name, import_):
        if threading.get_ident() != main_thread or depth[0]:
            module = original(name, import_)
        else:
            depth[0], started = 1, perf_counter()
            try:
                module = original(name, import_)
            finally:
                depth[0] = 0
                stats["import"] += perf_counter() - started
                claimed[0] += perf_counter() - started
        if name in hooks:
            wrap(name, module)
        return module

    bootstrap._find_and_load = find_and_load

    def report() -> None:  # registered first: runs after every other atexit handler
        marks["atexit end"] = perf_counter() - wall0
        Path(out).write_text(json.dumps({"stats": stats, "marks": marks}))

    atexit.register(report)
    marks["main start"] = perf_counter() - wall0
    imports_before_main = stats["import"]
    from hyperflow.cli import main

    try:
        code = main(argv)
    finally:
        marks["main end"] = perf_counter() - wall0
        stats["import before main"] = imports_before_main
    sys.exit(code)


def breakdown(record: dict, total: float) -> dict[str, float]:
    """Exclusive stages (seconds) that add up to the process's wall time."""
    stats, marks = record["stats"], record["marks"]
    main_end, atexit_end = marks["main end"], marks.get("atexit end", marks["main end"])
    named = ["store", "training", "model load + scoring"]
    stages = {
        "interpreter start": marks["main start"] - stats["import before main"],
        "imports": stats["import"],
        **{k: stats[k] for k in named if stats[k] > 0},
    }
    stages["other work of the command"] = main_end - sum(stages.values())
    stages["exit: atexit handlers"] = atexit_end - main_end
    stages["exit: interpreter teardown"] = total - atexit_end
    return stages


# ----------------------------------------------------------------------------------------- the commands


def make_rows(path: Path, n: int = 100) -> None:
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.drop(columns="target").head(n)
    frame.to_csv(path, index=False)


def environment(src: Path, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PYTHONPATH": str(src), "MLFLOW_TRACKING_URI": f"sqlite:///{store}", "PYTHONHASHSEED": "0"}


class Bench:
    def __init__(self, folder: Path, sides: dict[str, Path]) -> None:
        self.folder, self.sides = folder, sides
        self.store = folder / "existing.db"
        self.rows = folder / "rows.csv"
        make_rows(self.rows)
        self.fresh = 0
        self.cpu = 0.0
        code, _, err = self.run(sides["after"], ["train", "data=digits", "epochs=1", "model_name=coldstart"])
        if code:
            raise SystemExit(f"could not prepare the store: {err[-2000:]}")

    def run(
        self,
        src: Path,
        args: list[str],
        store: Path | None = None,
        argv: list[str] | None = None,
        probe_out: Path | None = None,
    ) -> tuple[int, float, str]:
        """One whole process; returns (exit code, seconds, stderr). Its CPU seconds (user + system, children
        included) go to ``self.cpu``."""
        env = environment(src, store or self.store)
        started_wall = time.time()
        if probe_out is not None:
            cmd = [sys.executable, __file__, "--probe", str(probe_out), str(started_wall), "--", *args]
        else:
            cmd = argv or [sys.executable, "-m", "hyperflow", *args]
        usage, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.folder, env=env, capture_output=True, text=True)
        seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        return proc.returncode, seconds, proc.stderr

    def new_store(self) -> Path:
        self.fresh += 1
        return self.folder / f"new-{self.fresh}.db"

    def commands(self) -> dict[str, dict]:
        train = ["train", "data=digits", "epochs=1"]
        out = str(self.folder / "scored.csv")
        return {
            "train, existing store": {"args": train},
            "train, new store": {"args": train, "fresh": True},
            "predict (100 rows)": {"args": ["predict", "model=models:/coldstart/1", f"data={self.rows}", f"out={out}"]},
            "torch + MLflow + one optimizer step": {"argv": OPTIMIZER_STEP},
            "mlflow run -e train": {
                "project": ["-e", "train", "--env-manager", "local", "-P", "epochs=1"],
                "floor": MLFLOW_FLOOR,
            },
        }


def summarize(name: str, times: list[float], floor: list[float]) -> str:
    med, fmed = statistics.median(times), statistics.median(floor)
    paired = statistics.median(t / f for t, f in zip(times, floor))
    return (
        f"{name:<34} median {med:6.2f} s  spread {min(times):.2f}-{max(times):.2f}  floor median {fmed:.2f} "
        f"(spread {min(floor):.2f}-{max(floor):.2f})  ratio {med / fmed:.2f}  per-round ratio median {paired:.2f}"
    )


def new_store_ab(rounds: int) -> None:
    """A new sqlite store opened by MLflow's ``SqlAlchemyStore`` in this process, made by MLflow (its tables
    and every schema migration) vs as a copy of the cached empty one (``hyperflow.tracking.new_store.make_if_missing``,
    what a command does), alternating which goes first; wall and CPU seconds of every store."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from hyperflow.tracking import new_store

    times: dict[str, list[tuple[float, float]]] = {"mlflow": [], "copy": []}
    with tempfile.TemporaryDirectory() as tmp:

        def open_new(name: str, copy: bool) -> tuple[float, float]:
            uri = f"sqlite:///{tmp}/{name}.db"
            wall, cpu = time.perf_counter(), time.process_time()
            if copy:
                new_store.make_if_missing(uri)
            SqlAlchemyStore(uri, tmp).engine.dispose()
            return time.perf_counter() - wall, time.process_time() - cpu

        open_new("warm-mlflow", False)  # imports, the cached empty store made
        open_new("warm-copy", True)
        for i in range(rounds):
            order = ("mlflow", "copy") if i % 2 == 0 else ("copy", "mlflow")
            for side in order:
                times[side].append(open_new(f"{i}-{side}", side == "copy"))
            print(
                f"round {i + 1} ({order[0]} first): made by MLflow {times['mlflow'][-1][0]:.3f} s "
                f"(CPU {times['mlflow'][-1][1]:.3f}), copy {times['copy'][-1][0]:.3f} s "
                f"(CPU {times['copy'][-1][1]:.3f})",
                flush=True,
            )
    for side, values in times.items():
        walls = [w for w, _ in values]
        print(
            f"  {side:6s} wall median {statistics.median(walls):.3f} s ({min(walls):.3f}-{max(walls):.3f}), "
            f"CPU median {statistics.median(c for _, c in values):.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", help="also time this commit (checked out in a temporary git worktree)")
    parser.add_argument("--commands", nargs="*", help="substrings of the command names to run (default: all)")
    parser.add_argument("--breakdown", action="store_true", help="then one probed process per command and side")
    parser.add_argument("--new-store-ab", action="store_true", help="only a new store: MLflow's vs the copy")
    parser.add_argument("--probe", nargs=2, metavar=("OUT", "T0"), help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe[0], float(args.probe[1]), args.rest)
    if args.new_store_ab:
        return new_store_ab(args.rounds)
    print(f"load average {os.getloadavg()}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sides = {"after": ROOT / "src"}
        if args.before:
            worktree = folder / "before"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                check=True,
                capture_output=True,
            )
            sides = {"before": worktree / "src", **sides}
        try:
            bench = Bench(folder, sides)
            commands = {
                k: v for k, v in bench.commands().items() if not args.commands or any(s in k for s in args.commands)
            }
            times: dict[tuple[str, str], list[float]] = {}
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name, spec in commands.items():
                    for side in order:
                        floor_argv = spec.get("floor", FLOOR)
                        _, floor, _ = bench.run(sides[side], [], argv=floor_argv)
                        floor_cpu = bench.cpu
                        store = bench.new_store() if spec.get("fresh") else None
                        argv = (
                            ["mlflow", "run", str(sides[side].parent), *spec["project"]]
                            if "project" in spec
                            else spec.get("argv")
                        )
                        code, seconds, err = bench.run(sides[side], spec.get("args", []), store, argv)
                        if code:
                            print(f"  {name} ({side}) exited {code}: {err.strip().splitlines()[-1:]}")
                        times.setdefault((name, side), []).append(seconds)
                        times.setdefault((name, side + " floor"), []).append(floor)
                        times.setdefault((name, side + " cpu"), []).append(bench.cpu)
                        times.setdefault((name, side + " floor cpu"), []).append(floor_cpu)
                        print(
                            f"round {round_ + 1} {name:<26} {side:<6} floor {floor:5.2f}  command {seconds:5.2f}  "
                            f"ratio {seconds / floor:.2f}   cpu: floor {floor_cpu:5.2f} command {bench.cpu:5.2f} "
                            f"ratio {bench.cpu / floor_cpu:.2f}",
                            flush=True,
                        )
            print(f"\n{args.rounds} rounds, seconds per whole process; load average now {os.getloadavg()}")
            for name in commands:
                for side in sides:
                    print(summarize(f"{name} [{side}]", times[(name, side)], times[(name, side + " floor")]))
                    print(
                        summarize(
                            f"{name} [{side}] CPU s", times[(name, side + " cpu")], times[(name, side + " floor cpu")]
                        )
                    )
            if args.breakdown:
                print("\nstages of one probed process per command (seconds)")
                for name, spec in commands.items():
                    if "project" in spec or "argv" in spec:
                        continue
                    for side, src in sides.items():
                        out = folder / "probe.json"
                        store = bench.new_store() if spec.get("fresh") else None
                        _, total, err = bench.run(src, spec["args"], store, probe_out=out)
                        stages = breakdown(json.loads(out.read_text()), total)
                        print(
                            f"{name} [{side}] total {total:.2f}: "
                            + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                        )
        finally:
            if args.before:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder / "before")],
                    capture_output=True,
                )
            shutil.rmtree(folder / "mlruns", ignore_errors=True)


if __name__ == "__main__":
    main()
