"""strategy=bayes (hyperflow.search.sampler): its proposals are valid hyperopt trials of the space, seeded by
(seed, trial id), pushed away from pending trials, informed by pruned ones, better than random search on a
cheap function, and the same after a resume; fmin and a real search run with it end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hyperopt import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, STATUS_OK, Trials, fmin, space_eval
from hyperopt.base import Domain

from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.search import hyperopt_records as records
from hyperflow.search import sampler
from hyperflow.search.runner import SearchRunner
from hyperflow.search.space import contains, flatten, to_hyperopt, to_vals
from hyperflow.search.trial import TrialRecord

SPACE = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "depth": {"type": "int", "low": 1, "high": 3},
    "width": {"type": "choice", "values": [16, 32, 64]},
    "optimizer": {
        "type": "choice",
        "options": {"adam": {}, "sgd": {"momentum": {"type": "uniform", "low": 0.5, "high": 0.99}}},
    },
}
NEVER = records.algo("bayes", 5, 0.25, 0, lambda done: "")  # no stop rule


def cost(p: dict) -> float:
    """A cheap function with its optimum at lr 1e-2, dropout 0.1, depth 2, width 32, sgd with momentum 0.9."""
    return (
        (math.log10(p["lr"]) + 2) ** 2
        + 4 * (p["dropout"] - 0.1) ** 2
        + 0.1 * (p["depth"] - 2) ** 2
        + 0.1 * (p["width"] != 32)
        + (0.3 if p["optimizer"] == "adam" else (p["momentum"] - 0.9) ** 2)
    )


def run(algo, seed: int, n: int = 40) -> Trials:
    trials = Trials()
    fmin(
        lambda s: {"status": STATUS_OK, "loss": cost(flatten(s))},
        to_hyperopt(SPACE),
        algo=algo,
        max_evals=n,
        trials=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return trials


def point_of(doc: dict) -> dict:
    return flatten(space_eval(to_hyperopt(SPACE), {k: v[0] for k, v in doc["misc"]["vals"].items() if v}))


def done(points_losses: list[tuple[dict, float]], status: str = "ok") -> Trials:
    history = [
        (i, to_vals(SPACE, p), TrialRecord(i, f"r{i}", p, status, loss, 3, [loss] * 3))
        for i, (p, loss) in enumerate(points_losses)
    ]
    return records.fill(Trials(), history, len(history))


def test_proposals_are_valid_trial_docs_of_the_space():
    trials = run(NEVER, seed=1, n=30)
    for doc in trials.trials:
        vals = doc["misc"]["vals"]
        assert doc["misc"]["idxs"] == {k: [doc["tid"]] if v else [] for k, v in vals.items()}
        assert set(vals) == set(to_vals(SPACE, {"optimizer": "adam"}, active=False))
        point = point_of(doc)
        assert contains(SPACE, point), point  # bounds, whole depths, choice values
        assert bool(vals["optimizer=sgd/momentum"]) == (point["optimizer"] == "sgd")  # the conditional holds
        assert vals["width"][0] in (0, 1, 2) and isinstance(vals["width"][0], int)


def test_the_same_seed_and_id_give_the_same_proposal():
    trials = run(NEVER, seed=3, n=15)
    domain = Domain(lambda s: 0, to_hyperopt(SPACE))
    first = NEVER([15], domain, trials, 0)[0]["misc"]["vals"]
    assert NEVER([15], domain, trials, 99)[0]["misc"]["vals"] == first  # fmin's own seed plays no part
    assert records.algo("bayes", 5, 0.25, 4, lambda d: "")([15], domain, trials, 0)[0]["misc"]["vals"] != first


def test_a_pending_trial_pushes_the_next_proposal_away():
    """Constant liar: a trial queued or running counts as bad, so the proposal it would have been moves."""
    domain = Domain(lambda s: 0, to_hyperopt(SPACE))
    for seed in range(3):
        trials = run(NEVER, seed=seed, n=20)
        alone = NEVER([21], domain, trials, 0)[0]  # the proposal for id 21 with nothing pending
        pending = records.trial_doc(trials, 20, alone["misc"]["vals"], {"status": "new"})
        trials.insert_trial_docs([pending])
        trials.refresh()
        for state in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            trials._dynamic_trials[-1]["state"] = state
            assert NEVER([21], domain, trials, 0)[0]["misc"]["vals"] != alone["misc"]["vals"]
    # ids asked for in one call: each later one proposed with the earlier ones pending
    one, two = (d["misc"]["vals"] for d in NEVER([20, 21], domain, run(NEVER, seed=0, n=20), 0))
    assert one != two


def test_it_finds_the_optimum_better_than_random_search():
    seeds = range(10)  # seeded: 0.061 against 0.132 when written
    bayes = [min(run(records.algo("bayes", 5, 0.25, s, lambda d: ""), s).losses()) for s in seeds]
    rand = [min(run(records.algo("random", 5, 0.25, s, lambda d: ""), s).losses()) for s in seeds]
    assert np.median(bayes) < 0.6 * np.median(rand), (bayes, rand)


def test_pruned_trials_rank_below_finished_ones_and_among_themselves_by_epochs():
    adam, sgd = (
        {"lr": 1e-3, "dropout": 0.1, "depth": 2, "width": 32, "optimizer": "adam"},
        {"lr": 1e-2, "dropout": 0.1, "depth": 2, "width": 32, "optimizer": "sgd", "momentum": 0.9},
    )
    trials = done([(adam, 0.5), (sgd, 0.1), (adam, 0.2)])
    trials._dynamic_trials[1]["result"].update(trial_status="pruned", history=[0.3, 0.1])  # pruned at epoch 2
    trials._dynamic_trials[2]["result"].update(trial_status="pruned", history=[0.2])  # pruned at epoch 1
    params = sampler.parameters(to_hyperopt(SPACE) and Domain(lambda s: 0, to_hyperopt(SPACE)).expr)
    ranked, unranked = sampler.observations(params, trials.trials)
    assert [o.tid for o in ranked] == [0, 1, 2] and not unranked  # finished, then the deeper pruned one


def test_pruned_trials_steer_the_model():
    """A region whose trials were pruned is avoided as one whose trials finished badly would be."""
    rng = np.random.default_rng(0)
    history = []
    for _ in range(24):  # good: lr near 1e-3; pruned: lr near 1e-1 (pruned trials report a *low* loss)
        good = len(history) % 2 == 0
        lr = 10 ** rng.uniform(-3.2, -2.8) if good else 10 ** rng.uniform(-1.3, -1.0)
        history.append(
            (
                {"lr": lr, "dropout": 0.2, "depth": 2, "width": 32, "optimizer": "adam"},
                0.3 + rng.random() * 0.01 if good else 0.1,
            )
        )
    trials = done(history)
    for doc in trials.trials[1::2]:
        doc["result"].update(trial_status="pruned", history=[0.2, 0.1])
    domain = Domain(lambda s: 0, to_hyperopt(SPACE))
    lrs = [point_of(NEVER([100 + i], domain, trials, 0)[0])["lr"] for i in range(20)]
    assert np.median(np.log10(lrs)) < -2.0, lrs


def test_a_resumed_search_proposes_what_the_uninterrupted_one_would_have():
    trials = run(NEVER, seed=7, n=12)
    domain = Domain(lambda s: 0, to_hyperopt(SPACE))
    expected = NEVER([12], domain, trials, 0)[0]["misc"]["vals"]
    history = [
        (
            d["tid"],
            d["misc"]["vals"],
            TrialRecord(d["tid"], "", point_of(d), "ok", d["result"]["loss"], 1, [d["result"]["loss"]]),
        )
        for d in trials.trials
    ]
    resumed = records.fill(Trials(), history, 12)  # as the runner rebuilds it from MLflow
    assert all(d["state"] == JOB_STATE_DONE for d in resumed.trials)
    assert NEVER([12], domain, resumed, 0)[0]["misc"]["vals"] == expected


def test_unsupported_distributions_are_named():
    from hyperopt import hp

    with pytest.raises(ValueError, match=r"normal.*'x'.*strategy=tpe"):
        sampler.parameters(Domain(lambda s: 0, {"x": hp.normal("x", 0, 1)}).expr)


def test_a_search_with_strategy_bayes(tmp_path: Path, experiment):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}\nwidth: {type: choice, values: [16, 32]}\n")
    config = build_search_config(
        {
            "space": str(space),
            "strategy": "bayes",
            "max_evals": "6",
            "n_startup_jobs": "2",
            "register": "false",
            "seed_presets": "false",
            "parallelism": "1",
        }
    )
    base = build_config({"epochs": "2", "width": "32", "progress": "false", "experiment": experiment})
    outcome = SearchRunner(config, base).run()
    assert len(outcome.records) == 6 and outcome.best is not None
    assert all(1e-3 <= r.params["lr"] <= 1e-1 and r.params["width"] in (16, 32) for r in outcome.records)
