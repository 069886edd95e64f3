"""The trial handle an objective gets: ``trial.report(step, value, **metrics)`` feeds the pruner and raises
``hyperflow.TrialPruned`` once the trial should stop; a pruned or failed trial's record (no store, no process)."""

from __future__ import annotations

import time

import pytest

import hyperflow
from hyperflow.core.pruning import MedianPruner
from hyperflow.engine.trial import Trial, TrialFailed, run_trial


def test_report_raises_trial_pruned_when_the_pruner_stops_the_trial() -> None:
    peers = [(n, [1.0, 0.5, 0.4, 0.3]) for n in range(3)]
    trial = Trial(0, {"x": 1}, MedianPruner(min_epochs=2, startup_trials=3, patience=1), peers)
    seen = []
    trial.on_report = lambda step, value, metrics: seen.append((step, value, metrics))
    trial.report(10, 2.0, accuracy=0.1)  # step 10 is the first report: the pruner compares at report 1
    with pytest.raises(hyperflow.TrialPruned, match="MedianPruner"):
        trial.report(20, 1.9)
    assert seen == [(10, 2.0, {"accuracy": 0.1}), (20, 1.9, {})]
    assert trial.should_prune() and issubclass(hyperflow.TrialPruned, Exception)


def test_report_raises_at_the_deadline() -> None:
    trial = Trial(0, {}, deadline=time.time() - 1)
    with pytest.raises(hyperflow.TrialPruned, match="timeout"):
        trial.report(1, 0.5)


def test_a_pruned_objective_is_recorded_at_its_best_value_and_a_caught_one_at_its_return() -> None:
    peers = [(n, [0.1, 0.1, 0.1]) for n in range(3)]
    pruner = MedianPruner(min_epochs=1, startup_trials=3, patience=1)

    def let_through(params: dict, trial: Trial) -> float:
        for step in range(5):
            trial.report(step, 1.0 - step * 0.1)
        return 0.0

    def caught(params: dict, trial: Trial) -> float:
        try:
            trial.report(0, 0.9)
        except hyperflow.TrialPruned:
            return 0.7  # its own value, after cleaning up

    record = run_trial(let_through, Trial(3, {}, pruner, peers))
    assert (record.status, record.loss, record.epochs, record.reason) == ("pruned", 1.0, 1, "MedianPruner at epoch 0")
    record = run_trial(caught, Trial(4, {}, pruner, peers))
    assert (record.status, record.loss, record.epochs) == ("pruned", 0.7, 1)


def test_a_failed_trial_counts_the_steps_it_reported() -> None:
    def fails(params: dict, trial: Trial) -> float:
        trial.report(1, 0.5)
        trial.report(2, 0.4)
        raise TrialFailed("it broke")

    record = run_trial(fails, Trial(0, {}))
    assert (record.status, record.epochs, record.history, record.reason) == ("failed", 2, [0.5, 0.4], "it broke")


def test_a_trial_stops_when_the_budget_left_is_used_and_the_stop_rule_counts_units() -> None:
    from hyperflow.engine.stopping import Finished, StopRule

    trial = Trial(0, {}, units_left=2)
    trial.report(1, 0.5)
    with pytest.raises(hyperflow.TrialPruned, match="budget"):
        trial.report(2, 0.4)
    rule = StopRule(budget=10)
    done = [Finished(False, 0.5, units=4), Finished(True, None, "x", units=3)]
    assert rule.check(done) == "" and rule.units_left(done) == 3
    assert rule.check([*done, Finished(False, 0.4, units=3)]) == "budget: 10 of 10 units of work used"
    assert StopRule().units_left(done) is None
