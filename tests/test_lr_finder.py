"""The LR range test: synthetic curves with known answers, a least-squares ground truth, side effects,
regret on digits, and the entry point on a real sqlite store."""

import random

import numpy as np
import pytest
import torch

from hyperflow.config import build_config
from hyperflow.core.assembly import setup_training
from hyperflow.core.lr_curve import curve_status, lr_range, read_curve, suggest
from hyperflow.core.lr_finder import LRFinder

LRS = np.geomspace(1e-7, 1, 100)


def synthetic(noise=0.0, top=2.3, bottom=0.1, knee=1e-3, cliff=3e-2, seed=0, shift=0.0):
    """Loss falls from `top` to `bottom` around `knee` and blows up past `cliff`."""
    x = np.log10(LRS)
    fall = bottom + (top - bottom) / (1 + np.exp(3 * (x - np.log10(knee))))
    rise = np.where(LRS > cliff, (x - np.log10(cliff)) * 20, 0.0) ** 2
    rng = np.random.default_rng(seed)
    return fall + rise + rng.normal(0, noise, len(LRS)) + shift


def read(losses, stopped=True):
    return read_curve(LRS[: len(losses)], np.asarray(losses, dtype=float), stopped)


@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1])
def test_clean_and_noisy_curves_give_a_suggestion_before_the_cliff(noise):
    curve = read(synthetic(noise, seed=1))
    lr = suggest(curve.lrs, curve.smoothed, "descent")
    assert 1e-4 < lr < 3e-3  # where the fall starts (knee at 1e-3), well below the minimum
    lr = suggest(curve.lrs, curve.smoothed, "valley")
    low, high = lr_range(curve.lrs, curve.smoothed)
    assert 1e-4 < lr < 3e-2 and low < high < 3e-2
    assert curve_status(curve) == "ok"
    assert suggest(curve.lrs, curve.smoothed, "steep") < 3e-2
    assert suggest(curve.lrs, curve.smoothed, "minimum") < 3e-3


def test_an_early_spike_does_not_move_the_answer():
    clean = read(synthetic(0.01))
    spiky_losses = synthetic(0.01)
    spiky_losses[10] = 50.0
    spiky = read(spiky_losses)
    for rule in ("descent", "valley"):
        assert suggest(spiky.lrs, spiky.smoothed, rule) == suggest(clean.lrs, clean.smoothed, rule)
    assert curve_status(spiky) == "ok"


def test_a_nan_tail_is_cut_and_counts_as_divergence():
    losses = synthetic(0.01)
    losses[85:] = np.nan
    curve = read(losses, stopped=False)
    assert len(curve.lrs) == 85 and curve.stopped_early
    assert np.isfinite(curve.smoothed).all()
    assert 1e-4 < suggest(curve.lrs, curve.smoothed, "valley") < 3e-2


def test_negative_losses_work_like_positive_ones():
    positive = read(synthetic(0.01))
    negative = read(synthetic(0.01, shift=-10.0))
    for rule in ("descent", "valley", "steep", "minimum"):
        assert suggest(negative.lrs, negative.smoothed, rule) == suggest(positive.lrs, positive.smoothed, rule)
    assert curve_status(negative) == "ok"


def test_a_flat_curve_is_flagged():
    curve = read(np.full(100, 1.0) + np.random.default_rng(0).normal(0, 0.01, 100), stopped=False)
    assert curve_status(curve) == "flat"


def test_no_divergence_is_flagged():
    losses = synthetic(0.01, cliff=10.0)  # still falling / flat at end_lr
    assert curve_status(read(losses, stopped=False)) == "no_divergence"


def test_a_very_noisy_curve_is_flagged():
    assert curve_status(read(synthetic(0.6, seed=3))) == "noisy"


def _least_squares(n=256, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.2, 3.0, d)
    X = torch.randn(n, d, generator=g) * scales
    y = X @ torch.randn(d, generator=g) + 0.5 * torch.randn(n, generator=g)
    hessian = 2 * X.T @ X / n  # of the mean squared error
    return X, y, float(torch.linalg.eigvalsh(hessian).max())


class _Squeeze(torch.nn.Module):
    def forward(self, pred, target):
        return torch.nn.functional.mse_loss(pred.squeeze(-1), target)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_least_squares_ground_truth(seed):
    """Gradient descent on a least-squares problem diverges for lr > 2 / lambda_max: the smoothed
    minimum of a mini-batch sweep must lie below that limit and the suggestions within [0.01, 2] /
    lambda_max. (A full-batch sweep overshoots the limit whatever the smoothing: the stiffest direction
    has converged by then and takes many steps to blow up again.) The default `descent` rule is tuned on
    networks, whose best constant lr sits 10-100x below the loss minimum: on a bare quadratic it lands at
    the bottom of that band (0.009-0.034 / lambda_max over five seeds), so its floor here is 0.005."""
    X, y, lam = _least_squares(seed=seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(X.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    finder = LRFinder(model, opt, _Squeeze(), batch_size=64, start_lr=1e-5, end_lr=10, seed=seed).fit(X, y)
    lowest = finder.lrs_[int(np.argmin(finder.smoothed_))]
    assert lowest < 2 / lam
    for rule in ("valley", "minimum"):
        assert 0.01 / lam <= suggest(finder.lrs_, finder.smoothed_, rule) <= 2 / lam
    assert 0.005 / lam <= finder.suggested_lr_ <= 2 / lam
    assert finder.lr_range_[1] < 2 / lam and finder.status_ == "ok"


def _state(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: {n: t.clone() for n, t in v.items() if torch.is_tensor(t)} for k, v in opt.state_dict()["state"].items()},
        [dict((k, v) for k, v in g.items() if k != "params") for g in opt.state_dict()["param_groups"]],
    )


def _rng_next():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize("fail_at", [None, 30])
def test_everything_is_restored_bit_for_bit(fail_at):
    setup = setup_training(build_config({"epochs": "1", "dropout": "0.2", "progress": "false"}))
    model, opt, d = setup.trainer.model, setup.trainer.optimizer, setup.dataset
    for _ in range(3):  # give Adam some state to restore
        opt.zero_grad()
        setup.trainer.loss_fn(model(d.X_train[:32]), d.y_train[:32]).backward()
        opt.step()
    loss_fn = setup.trainer.loss_fn
    calls = {"n": 0}

    def flaky(pred, target):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("boom")
        return loss_fn(pred, target)

    before = _state(model, opt)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = _rng_next()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    finder = LRFinder(model, opt, flaky, batch_size=32, repeats=2)
    if fail_at:
        with pytest.raises(RuntimeError, match="boom"):
            finder.fit(d.X_train, d.y_train)
    else:
        finder.fit(d.X_train, d.y_train)
        assert np.allclose(finder.curves_[0].lrs, np.geomspace(1e-7, 1, 100)[: len(finder.curves_[0].lrs)])
    assert _rng_next() == expected
    after = _state(model, opt)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1].keys() == after[1].keys()
    assert all(torch.equal(before[1][p][n], after[1][p][n]) for p in before[1] for n in before[1][p])
    assert before[2] == after[2]


def test_repeats_give_a_band_and_a_spread():
    setup = setup_training(build_config({"progress": "false", "batch_size": "32"}))
    d = setup.dataset
    finder = LRFinder(
        setup.trainer.model, setup.trainer.optimizer, setup.trainer.loss_fn, batch_size=32, repeats=3
    ).fit(d.X_train, d.y_train)
    low, high = finder.band_
    assert (
        len(finder.curves_) == 3
        and (low <= finder.smoothed_ + 1e-12).all()
        and (high >= finder.smoothed_ - 1e-12).all()
    )
    assert finder.suggestion_spread_ >= 1 and len(finder.suggestions_) == 3
    frame = finder.to_frame()
    assert list(frame.columns) == ["step", "lr", "loss", "smoothed_loss", "band_low", "band_high"]


def test_validation_loss_mode_and_linear_sweep():
    setup = setup_training(build_config({"progress": "false"}))
    d = setup.dataset
    model, loss_fn = setup.trainer.model, setup.trainer.loss_fn
    finder = LRFinder(
        model, setup.trainer.optimizer, loss_fn, mode="linear", start_lr=1e-4, end_lr=0.5, num_iter=40
    ).fit(d.X_train, d.y_train, d.X_val, d.y_val)
    assert np.allclose(np.diff(finder.lrs_), np.diff(finder.lrs_)[0]) and finder.lrs_[0] == pytest.approx(1e-4)
    assert len(finder.lrs_) <= 40 and finder.lrs_[-1] <= 0.5
    assert finder.lrs_[0] < finder.suggested_lr_ < finder.lrs_[-1]
    # the loss recorded is the validation rows': with their labels shifted by one class, learning the
    # training rows makes it rise where it otherwise falls
    wrong = LRFinder(
        model, setup.trainer.optimizer, loss_fn, mode="linear", start_lr=1e-4, end_lr=0.5, num_iter=40
    ).fit(d.X_train, d.y_train, d.X_val, (d.y_val + 1) % 10)
    assert finder.losses_[3] < finder.losses_[0] - 0.5 and wrong.losses_[3] > wrong.losses_[0] + 0.5


def _final_val_loss(lr, seed=0):
    setup = setup_training(
        build_config(
            {
                "lr": lr,
                "schedule": "constant",
                "epochs": "5",
                "batch_size": "32",
                "width": "128",
                "restore_best": "false",
                "progress": "false",
                "seed": seed,
            }
        )
    )
    d = setup.dataset
    return setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val).history[-1]["val_loss"]


@pytest.mark.integration
def test_regret_on_digits_is_small():
    """Training with the suggestion gets within 1.5x of the best of a 9-point lr grid, same budget."""
    grid = np.geomspace(1e-5, 1, 9)
    best = min(_final_val_loss(lr) for lr in grid)
    setup = setup_training(
        build_config({"schedule": "constant", "batch_size": "32", "width": "128", "progress": "false"})
    )
    d = setup.dataset
    finder = LRFinder(setup.trainer.model, setup.trainer.optimizer, setup.trainer.loss_fn, batch_size=32).fit(
        d.X_train, d.y_train
    )
    assert _final_val_loss(finder.suggested_lr_) <= 1.5 * best


def test_lr_find_entry_point_on_sqlite(experiment, client, capsys):
    from hyperflow.cli import main

    assert main(["lr-find", f"experiment={experiment}", "num_iter=60", "progress=false"]) == 0
    out = capsys.readouterr().out
    assert "hyperflow lr-find: suggested lr" in out
    run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])[0]
    assert run.data.tags["hyperflow.role"] == "lr_find"
    # digits with the default MLP has a clean curve: a descent, then a cliff the sweep stops at
    assert run.data.tags["lr_find_status"] == "ok"
    metrics = run.data.metrics
    assert metrics["lr_range_min"] < metrics["suggested_lr"] < metrics["lr_range_max"]
    history = client.get_metric_history(run.info.run_id, "lr_find_loss")
    assert 10 <= len(history) < 60 and sorted(m.step for m in history) == list(range(len(history)))
    assert max(m.value for m in client.get_metric_history(run.info.run_id, "lr_find_lr")) > metrics["lr_range_max"]
    assert len(client.get_metric_history(run.info.run_id, "lr_find_lr")) == len(history)
    paths = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")
    }
    assert "lr_find.csv" in paths and "plots/lr_find.png" in paths


@pytest.mark.integration
def test_train_with_lr_auto_nests_the_range_test(experiment, client):
    from hyperflow.workflows.train import train

    outcome = train(
        build_config(
            {
                "lr": "auto",
                "schedule": "onecycle",
                "max_lr": "auto",
                "epochs": "3",
                "log_model": "false",
                "progress": "false",
                "experiment": experiment,
            }
        )
    )
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    child = next(r for r in runs if r.data.tags["hyperflow.role"] == "lr_find")
    assert child.data.tags["mlflow.parentRunId"] == outcome.run_id
    parent = client.get_run(outcome.run_id)
    assert parent.data.params["lr"] == "auto"
    assert float(parent.data.params["resolved.max_lr"]) == pytest.approx(child.data.metrics["lr_range_max"])
    assert float(parent.data.params["resolved.lr"]) == pytest.approx(child.data.metrics["suggested_lr"])
