"""Crash-resume soak: real searches killed with SIGKILL at random moments (a trial training, a trial's closing
calls, the best model being logged), each time resumed with nothing but ``resume=<id>``, until they finish.

Kill points are found by polling the store for a state, then killing; the seed of the plan is printed and can be
set with HYPERFLOW_SOAK_SEED to replay a failure. Every search must end with: ``max_evals`` trials with results
(numbers 0..max_evals-1, none twice), exactly the points an uninterrupted search proposes (random search),
``hyperflow.best_run_id`` the trial with the lowest loss, nothing RUNNING, and exactly one registered version
(alias challenger) per search.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import forked
import pytest
from stores import ready_store

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.workflows.search import search as run_search

pytestmark = pytest.mark.integration  # every test here starts processes

SPACE = """
lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
optimizer: {type: choice, values: [adam, adamw]}
width: {type: choice, values: [8, 16]}
epochs: 6
"""
MAX_EVALS = 5
SEARCHES = 1  # a new random plan every run: the kill points vary from run to run
KILLS_PER_SEARCH = 3


def _state(client, exp_id):
    """(search run or None, trial runs) as the store has them now."""
    runs = client.search_runs([exp_id], max_results=200)
    parent = next((r for r in runs if r.data.tags.get("hyperflow.role") == "search"), None)
    return parent, [r for r in runs if r.data.tags.get("hyperflow.role") == "trial"]


def _closing(db: str, proc, window: float = 0.3) -> bool:
    """Watch the database directly (a query costs microseconds, a client call milliseconds) for a trial whose
    results are in while its run is still RUNNING: the few milliseconds between its two closing calls. Kills
    the search the moment it sees one."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        end = time.monotonic() + window
        while time.monotonic() < end:
            try:
                row = con.execute(
                    "SELECT 1 FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE "
                    "r.status = 'RUNNING' AND t.key = 'hyperflow.trial_status' LIMIT 1"
                ).fetchone()
            except sqlite3.OperationalError:  # locked by a writer for a moment
                continue
            if row:
                proc.send_signal(signal.SIGKILL)
                return True
    return False


def _kill_when(proc, client, exp_id, point: str, rng: random.Random, timeout: float = 120, db: str = "") -> str:
    """Poll the store until ``point`` is reached, then SIGKILL; what was hit (or 'exited' if the search ended
    first). ``trial:k``: k trials have results and another one trains; ``closing``: a trial has its results but
    its run is still RUNNING (its end call not yet sent; when no such moment shows up before the next trial
    trains, that trial is killed instead); ``model``: the best model is being logged."""
    deadline = time.monotonic() + timeout
    seen_training = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.returncode == 0, f"the search failed: {proc.stderr.read()[-3000:]}"
            return "exited"
        parent, trials = _state(client, exp_id)
        with_results = [t for t in trials if t.data.tags.get("hyperflow.trial_status")]
        training = [t for t in trials if t.info.status == "RUNNING" and t not in with_results]
        hit = None
        if point.startswith("trial:"):
            hit = "trial" if len(with_results) >= int(point[6:]) and training else None
        elif point == "closing":
            if any(t.info.status == "RUNNING" for t in with_results) or _closing(db, proc):
                hit = "closing"
            elif training:
                seen_training = seen_training or training[0].info.run_id
                if seen_training != training[0].info.run_id:
                    hit = "trial (no closing moment seen)"
        elif point == "model" and parent is not None and "hyperflow.best_run_id" in parent.data.tags:
            time.sleep(rng.uniform(0.0, 1.0))  # somewhere inside the model logging and registration
            hit = "model"
        if hit:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return hit
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"kill point {point} not reached in {timeout} s")


def test_searches_killed_at_random_moments_finish_as_if_never_killed(tmp_path, tracking_uri, experiment):
    seed = int(os.environ.get("HYPERFLOW_SOAK_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    print(f"soak seed {seed} (HYPERFLOW_SOAK_SEED={seed} replays this plan)")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = ready_store(uri)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    settings = {
        "space": str(space),
        "strategy": "random",
        "max_evals": str(MAX_EVALS),
        "pruner": "none",
        "parallelism": "1",
    }  # the points of an uninterrupted search: one trial at a time
    train = {"progress": "false", "flush_secs": "5"}
    reference = run_search(
        build_search_config({**settings, "register": "false"}), build_config({**train, "experiment": experiment})
    )
    expected = [r.params for r in reference.records]
    assert len({json.dumps(p, sort_keys=True) for p in expected}) == MAX_EVALS
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env["MLFLOW_TRACKING_URI"] = uri
    started = time.monotonic()
    log = []
    for i in range(SEARCHES):
        name = f"soak-{i}"
        exp_id = client.create_experiment(name)
        plan = sorted(rng.sample(range(1, MAX_EVALS), KILLS_PER_SEARCH - 2))
        points = [f"trial:{k}" for k in plan[:1]] + ["closing"] + [f"trial:{k}" for k in plan[1:]] + ["model"]
        args = [f"{k}={v}" for k, v in {**settings, **train}.items()] + [f"experiment={name}", f"model_name={name}"]
        parent_id = None
        for point in [*points, None]:
            command = args if parent_id is None else [f"resume={parent_id}"]
            proc = forked.Popen(
                [sys.executable, "-m", "hyperflow", "search", *command],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if point is None:
                _, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, f"seed {seed}: {err[-3000:]}"
                break
            hit = _kill_when(proc, client, exp_id, point, rng, db=str(tmp_path / "mlflow.db"))
            parent, trials = _state(client, exp_id)
            if hit == "closing" and any(
                t.info.status == "RUNNING" and t.data.tags.get("hyperflow.trial_status") for t in trials
            ):
                hit = "closing (results in, run left RUNNING)"
            log.append(f"{name}: {point} -> {hit}")
            if parent is not None:
                parent_id = parent.info.run_id
        parent, trials = _state(client, exp_id)
        context = f"seed {seed}, {log}"
        assert parent.info.run_id == parent_id and parent.info.status == "FINISHED", context
        assert not [t for t in trials if t.info.status == "RUNNING"], context
        done = {}
        for t in trials:
            if t.data.tags.get("hyperflow.trial_status"):
                number = int(t.data.tags["hyperflow.trial_number"])
                assert number not in done, f"trial {number} twice; {context}"
                done[number] = t
        assert sorted(done) == list(range(MAX_EVALS)), context
        assert [json.loads(done[n].data.tags["hyperflow.trial_params"]) for n in range(MAX_EVALS)] == expected, context
        ok = [t for t in done.values() if t.data.tags["hyperflow.trial_status"] == "ok"]
        assert all(t.info.status == "FINISHED" for t in ok), context
        best = min(ok, key=lambda t: (t.data.metrics["best_val_loss"], int(t.data.tags["hyperflow.trial_number"])))
        assert parent.data.tags["hyperflow.best_run_id"] == best.info.run_id, context
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == 1 and versions[0].run_id == best.info.run_id, context
        assert str(client.get_model_version_by_alias(name, "challenger").version) == str(versions[0].version)
    print(f"soak: {SEARCHES} searches, {len(log)} kills in {time.monotonic() - started:.0f} s: {log}")
