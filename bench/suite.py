"""The search suite (issue 25): methods compared at equal compute on many tasks, by anytime normalised regret and
mean rank, as HPOBench, YAHPO Gym and carps compare optimizers.

Tasks: the LCBench surrogate (bench/lcbench.py; by OpenML task id, the 17 of :data:`lcbench.DEFAULT_TASKS` by
default, any of its 34 with ``--tasks``) and real training with hyperflow's trainer on the built-in tables
``digits``, ``breast_cancer`` (classification) and ``diabetes`` (regression), bench/search.py's space and protocol
(bench/suite_objectives.py). Methods (bench/suite_methods.py): ``default``, ``tpe``, ``random`` (hyperflow, through
``hyperflow.search``), ``hyperband``, ``bohb``, ``bohb_median`` (hyperflow's TPE with Hyperband, its multi-fidelity
TPE with Hyperband or the median rule), ``optuna``, ``optuna_median``, ``optuna_hyperband`` (Optuna 5's TPE alone,
with MedianPruner, with HyperbandPruner). Every method gets the same objective code, the same seeds and the same
budget in units of work (epochs, pruned trials' included): ``--trials`` full-length trials' worth (default 50:
50 × 52 epochs on the surrogate, 50 × 20 on the real tables).

What is counted (bench/suite_scores.py): the best value found is the incumbent at full fidelity (the lowest value
of a trial that ran every epoch, what hyperflow and Optuna return as their best); regret is normalised per task
from the best known (surrogate: the best of 20,000 random configurations, bench/lcbench.py) to the top of the
range (surrogate: their median). Real tables have no such reference: per (task, seed), whose split differs, the
best known is the lowest value any method found for it in the results shown and the top the median of every
finished trial of those runs, so they are compared within one run of the suite. Ranks per (task, seed), averaged
over seeds, then tasks; the surrogate and the real tables are ranked apart. Results are cached per (method, task,
seed, budget) in bench/results/suite/ under a hash of the code the method runs (bench/search.py's rule): a stale
entry is recomputed, never shown.

    python bench/suite.py --tasks 3945 7593 digits --seeds 0 1 --methods default optuna_median --json out.json
    python bench/suite.py --methods default optuna optuna_median optuna_hyperband random tpe --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lcbench
import suite_methods
import suite_objectives
import suite_report as report
from suite_methods import METHODS, is_optuna
from suite_objectives import REAL_TASKS, TrialLog, epochs_of, known_tasks

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "suite"
PLOT = ROOT / "docs" / "suite_ranks.png"
PLOT_FRACTIONS = tuple(range(5, 101, 5))


# ------------------------------------------------------------------------------------------ cache


def code_key(method: str, task: str, budget: int) -> str:
    """A hash of what the result depends on: the method, task and budget, the suite's code and the code the
    method runs (hyperflow's package as imported, but its CLI, tracking and plots; Optuna's version)."""
    import hyperflow

    h = hashlib.sha256(json.dumps([method, METHODS[method], task, budget]).encode())
    for module in (lcbench, suite_objectives, suite_methods):
        h.update(inspect.getsource(module).encode())
    package = Path(hyperflow.__file__).resolve().parent
    folders = ("config", "core") if is_optuna(method) else ("", "config", "core", "search", "workflows")
    if task in REAL_TASKS or not is_optuna(method):
        h.update((BENCH / "search.py").read_bytes())
        for folder in folders:
            for path in sorted((package / folder).glob("*.py")):
                if path.name != "plots.py":
                    h.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    if is_optuna(method):
        import optuna

        h.update(optuna.__version__.encode())
    return h.hexdigest()[:16]


def cache_path(method: str, task: str, seed: int, n_trials: int) -> Path:
    return Path(os.environ.get("SUITE_CACHE", RESULTS)) / f"n{n_trials}" / method / task / f"seed{seed}.json"


def cached(method: str, task: str, seed: int, n_trials: int, key: str) -> dict[str, Any] | None:
    path = cache_path(method, task, seed, n_trials)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if data.get("key") == key else None


def run_one(method: str, task: str, seed: int, n_trials: int, key: str) -> None:
    """One search, its trials written to the cache (a failed search writes nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = TrialLog(Path(tmp) / "trials.jsonl")
        started = time.perf_counter()
        outcome = suite_methods.run(method, task, seed, n_trials * epochs_of(task), log)
        seconds = time.perf_counter() - started
        trials = log.read()
    path = cache_path(method, task, seed, n_trials)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "seconds": seconds, "outcome": outcome, "trials": trials}
    tmp_path = path.with_suffix(f".{os.getpid()}.tmp")
    tmp_path.write_text(json.dumps(record))
    tmp_path.replace(path)


Run = tuple[str, str, int, int, str]  # method, task, seed, budget in full-length trials, code key


def run_share(queue: Any) -> None:
    """Take (task, seed) cells from ``queue`` until None, and run each cell's searches, every method's."""
    import warnings

    warnings.filterwarnings("ignore")
    while (cell := queue.get()) is not None:
        for method, task, seed, n_trials, key in cell:
            started = time.perf_counter()
            run_one(method, task, seed, n_trials, key)
            print(f"  done {method} {task} seed {seed}: {time.perf_counter() - started:.1f} s", flush=True)


def run_all(runs: list[Run], jobs: int) -> None:
    """The runs, by (task, seed) cell in their order, taken from one queue by ``jobs`` fresh processes as each is
    free (not a Pool: its daemonic workers could not start a search's own worker processes): a run cut short
    leaves whole cells, the slow methods' searches spread over the processes."""
    cells: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        cells.setdefault((run[1], run[2]), []).append(run)
    ctx = get_context("spawn")
    queue = ctx.Queue()
    for cell in cells.values():
        queue.put(cell)
    procs = [ctx.Process(target=run_share, args=(queue,)) for _ in range(min(jobs, len(cells)))]
    for proc in procs:
        queue.put(None)
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            print(f"  a process exited with code {proc.exitcode}: its remaining runs are missing", flush=True)


# ------------------------------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(lcbench.DEFAULT_TASKS), help="LCBench ids, real table names")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of: {', '.join(METHODS)}")
    p.add_argument("--seeds", nargs="+", type=int, help="default 0-9 (0-4 when only real tables are asked)")
    p.add_argument("--trials", type=int, default=50, help="the budget in full-length trials' work (default 50)")
    p.add_argument("--jobs", type=int, default=1, help="processes running searches (default 1)")
    p.add_argument("--scale", action="store_true", help="per-trial cost of 1,000 trivial trials (suite_scale.py)")
    p.add_argument("--summary-only", action="store_true", help="print from the cache, run nothing")
    p.add_argument("--json", type=Path, help="write the results here (the issue's schema)")
    p.add_argument("--cache", type=Path, default=RESULTS, help=f"where searches are cached (default {RESULTS})")
    p.add_argument("--plot", type=Path, default=PLOT, help=f"mean rank against budget (default {PLOT})")
    args = p.parse_args()
    known = known_tasks()
    bad = [t for t in args.tasks if t not in known] + [m for m in args.methods if m not in METHODS]
    if bad:
        where = "" if lcbench.available() else f" (no LCBench surrogate at {lcbench.DATA})"
        p.exit(
            2,
            f"suite.py: unknown {', '.join(bad)}: tasks are {', '.join(known)}{where}; methods {', '.join(METHODS)}\n",
        )
    if (args.scale or not all(map(is_optuna, args.methods))) and not suite_methods.hyperflow_api():
        p.exit(2, "suite.py: this hyperflow has no hyperflow.search(objective, space=...): run Optuna's methods only\n")
    if args.seeds is None:
        args.seeds = list(range(5 if all(t in REAL_TASKS for t in args.tasks) else 10))
    os.environ["SUITE_CACHE"] = str(args.cache)  # the processes that run the searches write there too
    return args


def main() -> None:
    args = parse_args()
    print(f"python {' '.join(sys.argv)}")
    if args.scale:
        import suite_scale

        print(f"python {platform.python_version()} · {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        suite_scale.main()
        return
    print(
        f"python {platform.python_version()} · {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} · "
        f"{args.jobs} processes · budget {args.trials} full-length trials"
    )
    keys = {(m, t): code_key(m, t, args.trials) for m in args.methods for t in args.tasks}
    todo: list[Run] = [
        (m, t, s, args.trials, keys[m, t])
        for s in args.seeds  # a seed at a time over every task: a run cut short leaves whole seeds
        for t in args.tasks
        for m in args.methods
        if cached(m, t, s, args.trials, keys[m, t]) is None
    ]
    if todo and not args.summary_only:
        print(f"{len(todo)} searches to run; cached results in {args.cache}", flush=True)
        run_all(todo, args.jobs)
    data = {
        (m, t, s): d
        for (m, t), key in keys.items()
        for s in args.seeds
        if (d := cached(m, t, s, args.trials, key)) is not None
    }
    missing = [f"{m} {t} seed {s}" for m, t, s, *_ in todo if (m, t, s) not in data]
    if missing:
        print(f"missing or stale (not shown): {', '.join(missing)}")
    results = report.results_json(data, args.methods, args.trials)
    groups = {
        "LCBench surrogate": [t for t in args.tasks if t not in REAL_TASKS],
        "real training": [t for t in args.tasks if t in REAL_TASKS],
    }
    for title, tasks in groups.items():
        if tasks:
            report.print_summary(results, data, tasks, title)
            report.print_per_task(results, tasks)
    if groups["real training"] and {"default", "optuna_median"} <= set(args.methods):
        report.print_paired(data, groups["real training"], "default", "optuna_median", args.trials)
    if args.json:
        args.json.write_text(json.dumps(results) + "\n")
    fine = report.results_json(data, args.methods, args.trials, PLOT_FRACTIONS)
    report.plot_ranks(fine, groups, PLOT_FRACTIONS, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
