"""bench/suite.py: its maths (the anytime curve, regret at a share of the budget, ranks, the JSON's schema) and one
tiny run of the whole suite (one LCBench task, one seed, hyperflow's default and Optuna's TPE + MedianPruner, two
trials' worth of work), skipped where the surrogate, onnxruntime or Optuna are missing (the ``bench`` extra; the
surrogate lives beside the repository)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import lcbench  # noqa: E402
import suite_report  # noqa: E402
import suite_scores as scores  # noqa: E402


def trial(units: int, status: str, value: float | None) -> dict:
    return {"units": units, "status": status, "value": value, "seconds": 0.0, "params": {}}


def test_the_curve_counts_only_finished_trials_and_every_unit():
    trials = [trial(52, "ok", 0.5), trial(3, "stopped", 0.1), trial(52, "ok", 0.6), trial(52, "ok", 0.4)]
    trials.append(trial(9, "stopped", 0.2))
    assert scores.curve(trials) == [[52, 0.5], [159, 0.4], [168, 0.4]]
    assert scores.curve([trial(5, "stopped", 0.1), trial(2, "failed", None)]) == []


def test_best_at_a_share_of_the_budget_is_the_last_point_within_it():
    points = [[52, 0.5], [159, 0.4], [168, 0.4]]
    assert scores.best_at(points, 51) == math.inf
    assert scores.best_at(points, 52) == 0.5
    assert scores.best_at(points, 158.9) == 0.5
    assert scores.best_at(points, 1000) == 0.4
    got = scores.regrets(points, budget=200, best_known=0.3, top=0.8)
    assert got == {"10": 1.0, "25": 1.0, "50": pytest.approx(0.4), "100": pytest.approx(0.2)}  # 20, 50, 100, 200


def test_regret_is_normalised_capped_at_one_and_may_go_below_zero():
    assert scores.regret(0.3, best_known=0.3, top=0.8) == 0.0
    assert scores.regret(0.55, best_known=0.3, top=0.8) == pytest.approx(0.5)
    assert scores.regret(2.0, best_known=0.3, top=0.8) == 1.0
    assert scores.regret(math.inf, best_known=0.3, top=0.8) == 1.0
    assert scores.regret(0.25, best_known=0.3, top=0.8) == pytest.approx(-0.1)


def test_ranks_share_ties_and_average_over_seeds_then_tasks():
    assert scores.rank([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]
    table = {
        "a": {"t1": {"0": 0.1, "1": 0.5}, "t2": {"0": 0.2}},
        "b": {"t1": {"0": 0.2, "1": 0.1}, "t2": {"0": 0.2}},
        "c": {"t1": {"0": 0.3, "1": 0.9}, "t2": {"0": 0.1}, "t3": {"0": 0.0}},
    }
    ranks = scores.mean_ranks(table)  # t3 is not run by every method: left out
    assert ranks == {"a": pytest.approx((1.5 + 2.5) / 2), "b": pytest.approx((1.5 + 2.5) / 2), "c": 2.0}
    assert scores.mean_over_tasks({"t1": {"0": 0.2, "1": 0.4}, "t2": {"0": 0.0}}) == pytest.approx(0.15)


def test_the_json_has_the_issues_schema():
    """``{method: {task: {seed: {"curve": [[units, best], ...], "regret": {"10": r, ...}}}}}``, keys strings; a
    real table's range comes from the runs at hand (best found .. median finished trial, per seed)."""
    data = {
        ("default", "digits", 0): {"trials": [trial(20, "ok", 0.3), trial(3, "stopped", 0.2), trial(20, "ok", 0.1)]},
        ("optuna", "digits", 0): {"trials": [trial(20, "ok", 0.5)] * 3},
    }
    results = json.loads(json.dumps(suite_report.results_json(data, ["default", "optuna"], n_trials=3)))
    assert set(results) == {"default", "optuna"}
    entry = results["default"]["digits"]["0"]
    assert entry == {
        "curve": [[20, 0.3], [43, 0.1]],
        "regret": {"10": 1.0, "25": 1.0, "50": pytest.approx(0.5), "100": 0.0},
    }
    assert results["optuna"]["digits"]["0"]["regret"]["100"] == 1.0  # the median of 0.3, 0.1, 0.5 ×3 is 0.5
    rows = suite_report.summary(results, ["digits"])
    assert rows["default"]["rank"] == {"10": 1.5, "25": 1.5, "50": 1.0, "100": 1.0}


def test_random_configurations_stay_in_the_benchmarks_space():
    configs = lcbench.random_configs(2000, seed=0)
    for i, key in enumerate(lcbench.INPUTS):
        d = lcbench.SPACE[key]
        assert configs[:, i].min() >= d["low"] and configs[:, i].max() <= d["high"], key
        if key in lcbench.INTEGERS:
            assert (configs[:, i] == configs[:, i].round()).all(), key
    batch = configs[:, lcbench.INPUTS.index("batch_size")]
    assert 0.4 < (batch < math.sqrt(16 * 512)).mean() < 0.6  # half below the geometric middle: a log scale


needs_surrogate = pytest.mark.skipif(
    not (lcbench.available() and importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("optuna")),
    reason="the LCBench surrogate, onnxruntime or optuna missing (the bench extra)",
)


@needs_surrogate
def test_a_surrogate_curve_is_52_epochs_of_cross_entropy():
    point = {"batch_size": 64, "learning_rate": 1e-3, "momentum": 0.9, "weight_decay": 1e-3, "num_layers": 3}
    values = lcbench.Surrogate().curve("3945", {**point, "max_units": 256, "max_dropout": 0.2})
    assert len(values) == lcbench.EPOCHS and all(0 < v < 10 for v in values)
    assert values == lcbench.Surrogate().curve("3945", {**point, "max_units": 256.2, "max_dropout": 0.2})


@needs_surrogate
@pytest.mark.integration
def test_a_tiny_suite_run_writes_its_json_and_plot_and_reuses_its_cache(tmp_path):
    command = [sys.executable, str(BENCH / "suite.py"), "--tasks", "3945", "--seeds", "0", "--trials", "2"]
    command += ["--methods", "default", "optuna_median", "--json", str(tmp_path / "out.json")]
    command += ["--plot", str(tmp_path / "ranks.png"), "--cache", str(tmp_path / "cache")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "2 searches to run" in first.stdout and "| optuna_median |" in first.stdout
    results = json.loads((tmp_path / "out.json").read_text())
    for method in ("default", "optuna_median"):
        entry = results[method]["3945"]["0"]
        assert set(entry["regret"]) == {"10", "25", "50", "100"}
        assert entry["curve"] and entry["curve"][-1][0] >= 2 * lcbench.EPOCHS
    assert (tmp_path / "ranks.png").stat().st_size > 0
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "searches to run" not in again.stdout
    assert json.loads((tmp_path / "out.json").read_text()) == results
