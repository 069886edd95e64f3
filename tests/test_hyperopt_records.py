"""hyperopt's trial records as hyperflow writes them (hyperopt's range in pyproject.toml holds the version they were
read from; tests/test_project.py checks the installed one falls in it): a history put into a
Trials reads back as it was written, new ids continue after it, queued points run first, fmin goes on
from a filled Trials, and the multi-fidelity sampler's view of it. A hyperopt upgrade that changes the format
fails here, not in a resumed search."""

import pytest
from hyperopt import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK, Trials, space_eval, tpe
from hyperopt.base import Domain

from hyperflow.engine import hyperopt_records as records
from hyperflow.engine.space_hyperopt import flatten, to_hyperopt, to_vals
from hyperflow.engine.stopping import Finished
from hyperflow.engine.trial import TrialRecord

SPACE = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "width": {"type": "choice", "values": [16, 32]},
    "optimizer": {
        "type": "choice",
        "options": {"adam": {}, "sgd": {"momentum": {"type": "uniform", "low": 0.5, "high": 0.9}}},
    },
}
POINTS = [
    {"lr": 0.001, "width": 32, "optimizer": "adam"},
    {"lr": 0.01, "width": 16, "optimizer": "sgd", "momentum": 0.7},
    {"lr": 0.05, "width": 16, "optimizer": "adam"},
]


def _history():
    # trial 1 failed; numbers 0, 1, 3 (2 was killed in flight and left a gap)
    return [
        (0, to_vals(SPACE, POINTS[0]), TrialRecord(0, "r0", POINTS[0], "ok", 0.5, 2, [0.7, 0.5])),
        (1, to_vals(SPACE, POINTS[1]), TrialRecord(1, "r1", POINTS[1], "failed", None, 1, [], "diverged")),
        (3, to_vals(SPACE, POINTS[2]), TrialRecord(3, "r3", POINTS[2], "pruned", 0.25, 1, [0.25])),
    ]


def test_filled_trials_read_back_as_written():
    trials = records.fill(Trials(), _history(), next_id=4)
    assert [t["tid"] for t in trials.trials] == [0, 1, 3]
    assert all(t["state"] == JOB_STATE_DONE for t in trials.trials)
    assert trials.results == [
        {"status": STATUS_OK, "loss": 0.5, "history": [0.7, 0.5], "trial_status": "ok", "run_id": "r0", "units": 2}
        | {"number": 0},
        {"status": STATUS_FAIL, "failure": "diverged", "run_id": "r1", "units": 1, "number": 1},
        {"status": STATUS_OK, "loss": 0.25, "history": [0.25], "trial_status": "pruned", "run_id": "r3", "units": 1}
        | {"number": 3},
    ]
    assert trials.losses() == [0.5, None, 0.25]
    # the vals decode to the points they came from (choice indices, and [] for a branch not taken)
    for doc, point in zip(trials.trials, POINTS):
        vals = doc["misc"]["vals"]
        assert doc["misc"]["idxs"] == {k: [doc["tid"]] if v else [] for k, v in vals.items()}
        assert flatten(space_eval(to_hyperopt(SPACE), {k: v[0] for k, v in vals.items() if v})) == point
    assert trials.trials[0]["misc"]["vals"]["optimizer=sgd/momentum"] == []
    assert records.finished(trials.results) == [
        Finished(False, 0.5, units=2),
        Finished(True, None, "diverged", units=1),
        Finished(False, 0.25, units=1),
    ]
    assert trials.new_trial_ids(1) == [4]  # ids below next_id are taken, the gap (2) included


def test_queued_points_and_the_trial_in_flight():
    trials = records.fill(Trials(), _history()[:1], next_id=1)
    records.queue(trials, to_vals(SPACE, POINTS[1]))
    queued = trials._dynamic_trials[-1]
    assert (queued["tid"], queued["state"], queued["result"]) == (1, JOB_STATE_NEW, {"status": "new"})
    assert records.running_tid(trials) is None and records.running_tid(None) is None
    queued["state"] = JOB_STATE_RUNNING
    assert records.running_tid(trials) == 1


@pytest.mark.parametrize("strategy", ["random", "tpe", "bohb"])
def test_fmin_continues_a_filled_history(strategy):
    """The queued point runs first, new ids continue after the history, and each id's suggestion depends on
    (seed, id) alone: two runs from the same history propose the same points."""

    def run():
        seen = []
        trials = records.fill(Trials(), _history(), next_id=4)
        records.queue(trials, to_vals(SPACE, POINTS[0]))

        def objective(sample):
            seen.append(flatten(sample))
            return records.result(sample["lr"])

        suggest = records.algo(strategy, n_startup_jobs=2, gamma=0.25, seed=7, stop=lambda done: "")
        records.minimize(objective, to_hyperopt(SPACE), trials, suggest, max_evals=6, seed=7, progressbar=False)
        return trials, seen

    trials, seen = run()
    assert [t["tid"] for t in trials.trials] == [0, 1, 3, 4, 5, 6]
    assert seen[0] == POINTS[0] and len(seen) == 3
    assert run()[1] == seen


def test_bohb_sees_each_trial_at_the_highest_budget_that_enough_trials_reached():
    """Trials 0 and 2 ran 4 epochs, 1 was pruned at 2, 4 at 1, 3 failed. With 2 needed the model ranks them at
    epoch 4 (the finished trials' losses), the others after them, the deeper first; with 3, at epoch 2 (the best
    up to it, the pruned trial's own loss); with 4, at epoch 1; the failed trial stays as it is; with 5, none
    yet."""
    point = to_vals(SPACE, POINTS[0])
    history = [
        (0, point, TrialRecord(0, "r0", POINTS[0], "ok", 0.5, 4, [0.9, 0.7, 0.6, 0.5])),
        (1, point, TrialRecord(1, "r1", POINTS[0], "pruned", 0.4, 2, [0.8, 0.4])),
        (2, point, TrialRecord(2, "r2", POINTS[0], "ok", 0.2, 4, [1.0, 0.9, 0.3, 0.2])),
        (3, point, TrialRecord(3, "r3", POINTS[0], "failed", None, 0, [], "diverged")),
        (4, point, TrialRecord(4, "r4", POINTS[0], "pruned", 2.0, 1, [2.0])),
    ]
    trials = records.fill(Trials(), history, next_id=5)

    def seen(enough):
        view = records.at_highest_budget(trials, enough)
        return [(d["tid"], d["result"]["status"], d["result"].get("loss")) for d in view.trials]

    # the loss each trial gets is its rank: 0, 2 at epoch 4 (0.2 < 0.5), then 1 (stopped 2 short), 4 (3 short)
    assert seen(2) == [
        (0, STATUS_OK, 1),
        (1, STATUS_OK, 2),
        (2, STATUS_OK, 0),
        (3, STATUS_FAIL, None),
        (4, STATUS_OK, 3),
    ]
    # at epoch 2: 0 (best up to it 0.7), 1 (its own loss 0.4), 2 (0.9); then 4 (1 short)
    assert seen(3) == [
        (0, STATUS_OK, 1),
        (1, STATUS_OK, 0),
        (2, STATUS_OK, 2),
        (3, STATUS_FAIL, None),
        (4, STATUS_OK, 3),
    ]
    # at epoch 1: 0.9, 0.8, 1.0 and 4's own loss 2.0
    assert seen(4) == [
        (0, STATUS_OK, 1),
        (1, STATUS_OK, 0),
        (2, STATUS_OK, 2),
        (3, STATUS_FAIL, None),
        (4, STATUS_OK, 3),
    ]
    assert records.at_highest_budget(trials, 5) is None
    # the suggestion is TPE's on that view: the same point for the same seed
    domain = Domain(lambda _: None, to_hyperopt(SPACE))
    ours = records.multi_fidelity_suggest([5], domain, trials, 3, n_startup_jobs=2)
    theirs = tpe.suggest([5], domain, records.at_highest_budget(trials, 2), 3, n_startup_jobs=2, gamma=0.5)
    assert ours[0]["misc"]["vals"] == theirs[0]["misc"]["vals"]


def test_a_stop_reason_ends_fmin_before_new_trials():
    calls = []

    def stop(done):
        calls.append(list(done))
        return "loss_threshold"

    for strategy in ("tpe", "random"):
        calls.clear()
        trials = records.fill(Trials(), _history(), next_id=4)
        records.minimize(
            lambda s: records.result(1.0),
            to_hyperopt(SPACE),
            trials,
            records.algo(strategy, 20, 0.25, 0, stop),
            max_evals=10,
            seed=0,
            progressbar=False,
        )
        assert len(trials.trials) == 3 and calls[0] == records.finished(trials.results)


def test_trial_seed_depends_on_seed_and_id_only():
    assert records.trial_seed(42, 5) == records.trial_seed(42, 5)
    assert len({records.trial_seed(42, t) for t in range(50)}) == 50
    assert records.trial_seed(42, 5) != records.trial_seed(43, 5)
    assert 0 <= records.trial_seed(-3, 10**6) < 2**31 - 1


def test_presets_as_vals():
    space = {"lr": {"type": "loguniform", "low": 1e-5, "high": 1.0}, "optimizer": SPACE["optimizer"]}
    presets = records.preset_points(space)
    assert presets and all(set(v) == set(to_vals(space, {"lr": 1e-3, "optimizer": "adam"})) for v in presets)
    assert records.preset_points(space, None) == []
