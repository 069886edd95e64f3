import math
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hyperflow.config import build_config
from hyperflow.core.losses import build_loss
from hyperflow.core.models import build_model
from hyperflow.core.optim import build_optimizer, build_scheduler
from hyperflow.errors import UsageError


def lrs_and_momenta(config, steps_per_epoch=10):
    model = torch.nn.Linear(2, 1)
    opt = build_optimizer(model.parameters(), config)
    sched = build_scheduler(opt, config, steps_per_epoch)
    lrs, momenta = [], []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        group = opt.param_groups[0]
        momenta.append(group.get("momentum", group.get("betas", (None,))[0]))
        opt.step()
        if sched:
            sched.step()
    return lrs, momenta


@pytest.mark.parametrize(
    "name, shape, out, task, expected",
    [
        ("mlp", (64,), 10, "classification", (5, 10)),
        ("cnn", (64,), 10, "classification", (5, 10)),
        ("cnn", (1, 16, 16), 3, "classification", (5, 3)),
        ("unet", (1, 32, 32), 1, "segmentation", (5, 1, 32, 32)),
    ],
)
def test_models_map_inputs_to_outputs(name, shape, out, task, expected):
    model = build_model(
        name,
        shape,
        out,
        task=task,
        image_shape=(1, 8, 8) if shape == (64,) else None,
        batch_norm=True,
        dropout=0.1,
        depth=3,
    )
    assert tuple(model.eval()(torch.randn(5, *shape)).shape) == expected


def test_model_task_mismatches_are_refused():
    with pytest.raises(UsageError, match="use model=unet"):
        build_model("mlp", (1, 32, 32), 1, task="segmentation")
    with pytest.raises(UsageError, match="predicts masks"):
        build_model("unet", (1, 32, 32), 2, task="classification")
    with pytest.raises(UsageError, match="needs image inputs"):
        build_model("cnn", (30,), 2, task="classification")


def test_user_model_factory(tmp_path: Path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent("""
        import torch
        def tiny(input_shape, output_size, hidden=8):
            return torch.nn.Sequential(torch.nn.Linear(input_shape[0], hidden), torch.nn.Linear(hidden, output_size))
        def not_a_module(input_shape, output_size):
            return 42
        def broken(input_shape, output_size):
            raise RuntimeError("boom")
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    model = build_model("my_models:tiny", (4,), 3, task="classification", model_kwargs={"hidden": 5})
    assert model[0].out_features == 5
    with pytest.raises(UsageError, match=r"not a torch.nn.Module"):
        build_model("my_models:not_a_module", (4,), 3, task="classification")
    with pytest.raises(UsageError, match="cannot import module 'nowhere'"):
        build_model("nowhere:f", (4,), 3, task="classification")
    with pytest.raises(UsageError, match="has no function 'missing'"):
        build_model("my_models:missing", (4,), 3, task="classification")
    with pytest.raises(UsageError, match="raised RuntimeError: boom"):
        build_model("my_models:broken", (4,), 3, task="classification")
    with pytest.raises(
        UsageError, match=r"^model_kwargs width, seed: model 'my_models:tiny' takes no such argument; it takes hidden$"
    ):
        build_model("my_models:tiny", (4,), 3, task="classification", model_kwargs={"hidden": 5, "width": 2, "seed": 1})
    with pytest.raises(UsageError, match=r"it takes none besides input_shape and output_size$"):
        build_model("my_models:broken", (4,), 3, task="classification", model_kwargs={"hidden": 5})


def test_losses_follow_the_task():
    assert isinstance(build_loss(None, "classification", 0.1), torch.nn.CrossEntropyLoss)
    assert build_loss(None, "classification", 0.1).label_smoothing == 0.1
    with pytest.raises(UsageError, match="loss=dice does not fit a classification task"):
        build_loss("dice", "classification")
    with pytest.raises(UsageError, match="loss=cross_entropy does not fit a regression task"):
        build_loss("cross_entropy", "regression")
    with pytest.raises(UsageError, match="label_smoothing applies"):
        build_loss("mse", "regression", 0.1)
    logits = torch.full((2, 1, 4, 4), 20.0)
    masks = torch.ones(2, 1, 4, 4)
    assert float(build_loss("dice", "segmentation")(logits, masks)) < 1e-3  # perfect masks: no loss
    assert float(build_loss("dice", "segmentation")(-logits, masks)) > 0.8
    reg = build_loss("mse", "regression")
    assert float(reg(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 4.0]))) == pytest.approx(2.0)


def test_optimizers_get_their_settings():
    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(
        p,
        build_config(
            {"optimizer": "sgd", "nesterov": "true", "weight_decay": "0.01", "schedule": "constant", "lr": "0.1"}
        ),
    )
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 0.01
    adamw = build_optimizer(p, build_config({"preset": "adamw_cosine"}))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.01
    assert isinstance(build_optimizer(p, build_config({"preset": "rprop"})), torch.optim.Rprop)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_kernels_by_default_and_the_same_update_as_the_loop(optimizer):
    """fused=true (default) takes torch's fused kernel; the update matches torch's per-tensor loop to float
    precision (SGD exactly), and fused=false is the loop."""
    settings = {"optimizer": optimizer, "schedule": "constant", "lr": "0.05", "weight_decay": "0.01"}
    weights = {}
    for fused in ("true", "false"):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 3)
        opt = build_optimizer(model.parameters(), build_config({**settings, "fused": fused}))
        assert bool(opt.defaults.get("fused")) is (fused == "true")
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(16, 8)).pow(2).mean().backward()
            opt.step()
        weights[fused] = model.weight.detach().clone()
    torch.testing.assert_close(weights["true"], weights["false"], rtol=1e-5, atol=1e-6)


def test_an_evaluation_only_setup_builds_no_optimizer_and_cannot_fit():
    from hyperflow.core.assembly import load_data, setup_training

    config = build_config({"data": "digits", "epochs": "1", "width": "16", "depth": "1"})
    dataset = load_data(config)
    setup = setup_training(config, dataset=dataset, train=False)
    assert setup.trainer.optimizer is None and setup.trainer.scheduler is None
    assert 0 <= setup.trainer.evaluate(dataset.X_val, dataset.y_val)["accuracy"] <= 1
    with pytest.raises(ValueError, match="only evaluates"):
        setup.trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    assert (
        setup_training(config, dataset=dataset)
        .trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
        .epochs_run
        == 1
    )


def test_parameters_without_a_fused_kernel_train_with_the_loop():
    """torch refuses fused=True for complex parameters only at the first step; the optimizer is built without it."""
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    opt = build_optimizer([p], build_config({"optimizer": "adam", "schedule": "constant"}))
    assert not opt.defaults.get("fused")
    p.grad = torch.ones_like(p)
    opt.step()
    assert p.real.lt(1).all()
    with pytest.raises(RuntimeError, match="fused"):  # what the check spares the training
        torch.optim.Adam([p], lr=0.1, fused=True).step()


def test_onecycle_warms_up_then_decays():
    c = build_config({"schedule": "onecycle", "lr": "0.1", "epochs": "5", "optimizer": "sgd"})
    lrs, momenta = lrs_and_momenta(c)
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < lrs[0] / 100
    assert 0.25 < peak / len(lrs) < 0.35  # pct_start = 0.3
    assert momenta[peak] < momenta[0]  # momentum cycles inversely to the lr


def test_cyclic_stays_between_bounds():
    c = build_config(
        {
            "schedule": "cyclic",
            "max_lr": "0.1",
            "base_lr": "0.01",
            "epochs": "8",
            "cycle_epochs": "2",
            "optimizer": "sgd",
        }
    )
    lrs, momenta = lrs_and_momenta(c)
    assert min(lrs) == pytest.approx(0.01) and max(lrs) == pytest.approx(0.1)
    assert sum(1 for i in range(1, len(lrs) - 1) if lrs[i - 1] < lrs[i] > lrs[i + 1]) == 4  # 4 peaks
    assert len(set(momenta)) > 1


def test_cyclic_without_momentum_does_not_cycle_it():
    c = build_config({"schedule": "cyclic", "optimizer": "sgd", "momentum": "0", "epochs": "4"})
    lrs, momenta = lrs_and_momenta(c)
    assert set(momenta) == {0.0} and max(lrs) > min(lrs)
    c = build_config({"schedule": "cyclic", "optimizer": "adam", "epochs": "4", "cycle_mode": "triangular2"})
    assert max(lrs_and_momenta(c)[0]) == pytest.approx(c.lr)


def test_cosine_with_warmup():
    c = build_config({"schedule": "cosine", "lr": "0.1", "warmup_epochs": "1", "epochs": "5", "min_lr": "0.001"})
    lrs, _ = lrs_and_momenta(c)
    assert lrs[0] < lrs[9] and max(lrs) == pytest.approx(0.1, rel=1e-2)
    assert lrs[-1] == pytest.approx(0.001, abs=2e-3) and all(math.isfinite(x) for x in lrs)
    assert (
        build_scheduler(
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 0.1), build_config({"schedule": "constant"}), 10
        )
        is None
    )
