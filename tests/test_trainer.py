import math
import subprocess
import sys

import pytest
import torch

from hyperflow.config import build_config
from hyperflow.core.assembly import load_data, setup_training
from hyperflow.core.trainer import Callback, steps_per_epoch
from hyperflow.errors import UsageError


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append("start")

    def on_epoch_end(self, trainer, epoch, metrics):
        self.events.append((epoch, dict(metrics)))

    def on_train_end(self, trainer, result):
        self.events.append(("end", result.status))


def fit(overrides, callbacks=()):
    setup = setup_training(build_config({"progress": "false", **overrides}), callbacks=callbacks)
    d = setup.dataset
    return setup, setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)


def test_learns_digits_and_reports_metrics_through_callbacks():
    recorder = Recorder()
    setup, result = fit({"epochs": "6"}, [recorder])
    assert result.status == "completed" and result.epochs_run == 6
    assert recorder.events[0] == "start" and recorder.events[-1] == ("end", "completed")
    epochs = [e for e in recorder.events if isinstance(e[0], int)]
    assert [e[0] for e in epochs] == list(range(1, 7))
    assert set(epochs[0][1]) == {"train_loss", "val_loss", "val_accuracy", "val_f1", "lr"}
    assert epochs[-1][1]["train_loss"] < epochs[0][1]["train_loss"]
    test = setup.trainer.evaluate(setup.dataset.X_test, setup.dataset.y_test, prefix="test_")
    assert test["test_accuracy"] > 0.9


def test_same_seed_same_result_other_seed_differs():
    a = fit({"epochs": "2", "seed": "7"})[1].history
    b = fit({"epochs": "2", "seed": "7"})[1].history
    c = fit({"epochs": "2", "seed": "8"})[1].history
    assert a == [dict(h) for h in b]
    assert a[-1]["val_loss"] != c[-1]["val_loss"]


def test_early_stopping_restores_the_best_weights():
    setup, result = fit({"epochs": "60", "schedule": "constant", "lr": "0.01", "patience": "3", "width": "512"})
    assert result.status == "early_stopped" and result.epochs_run < 60
    assert result.epochs_run == result.best_epoch + 3
    d = setup.dataset
    restored = setup.trainer.evaluate(d.X_val, d.y_val, prefix="val_")["val_loss"]
    assert restored == pytest.approx(result.best_val_loss, rel=1e-5)
    assert restored < result.history[-1]["val_loss"]


def test_divergence_is_caught_and_reported():
    _, result = fit({"epochs": "5", "optimizer": "sgd", "schedule": "constant", "lr": "1e6", "momentum": "0"})
    # lr=1e6 blows the weights up within the first epoch: training stops there, nothing counts as best
    assert result.status == "diverged" and result.reason.startswith("non-finite loss at epoch 1 ")
    assert result.epochs_run == 1 and len(result.history) == 1
    assert result.best_epoch == 0 and result.best_val_loss == float("inf")


def test_gradient_clipping_bounds_the_update():
    setup = setup_training(
        build_config(
            {
                "progress": "false",
                "epochs": "1",
                "grad_clip": "1e-6",
                "optimizer": "sgd",
                "schedule": "constant",
                "lr": "1",
                "momentum": "0",
            }
        )
    )
    before = [p.detach().clone() for p in setup.trainer.model.parameters()]
    d = setup.dataset
    setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    moved = float(torch.cat([(p - q).flatten() for p, q in zip(setup.trainer.model.parameters(), before)]).norm())
    # each of the 20 steps moves the weights by at most lr * clip = 1e-6
    assert moved <= steps_per_epoch(len(d.X_train), 64) * 1e-6 * 1.01


def test_regression_and_segmentation_metrics():
    _, result = fit({"data": "diabetes", "epochs": "3", "batch_size": "32"})
    assert {"val_rmse", "val_mae", "val_r2"} <= set(result.history[-1])
    assert result.history[-1]["val_rmse"] > 5  # in the target's units, not standardised ones
    _setup, result = fit({"data": "shapes", "model": "unet", "epochs": "1", "channels": "4", "batch_size": "32"})
    assert {"val_dice", "val_iou"} <= set(result.history[-1])


def test_cnn_on_digits_as_images():
    _, result = fit({"model": "cnn", "epochs": "2", "channels": "8"})
    assert result.history[-1]["val_accuracy"] > 0.3


def test_a_batch_size_larger_than_the_data_trains_on_one_batch_of_every_row(caplog):
    """A small table with the default batch size (or a search space's larger choices) trains, as a
    DataLoader would: one batch of all the training rows per epoch, with one warning saying so."""
    d = load_data(build_config({"data": "wine"}))
    with caplog.at_level("WARNING", logger="hyperflow.core.assembly"):
        setup = setup_training(build_config({"data": "wine", "batch_size": "500", "epochs": "2"}), dataset=d)
        again = setup_training(build_config({"data": "wine", "batch_size": "500", "epochs": "2"}), dataset=d)
    assert setup.config.batch_size == again.config.batch_size == 124 == setup.trainer.batch_size
    told = [r.message for r in caplog.records if "larger than the 124 training rows" in r.message]
    assert told == ["batch_size=500 is larger than the 124 training rows: each epoch is one batch of 124 rows"]
    result = setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    assert result.epochs_run == 2 and math.isfinite(result.history[-1]["val_loss"])


def test_dice_on_a_table_is_refused():
    with pytest.raises(UsageError, match="loss=dice does not fit a classification task"):
        setup_training(build_config({"loss": "dice"}))


def test_trailing_batch_of_one_is_dropped():
    assert steps_per_epoch(129, 64) == 2 and steps_per_epoch(130, 64) == 3 and steps_per_epoch(64, 64) == 1


@pytest.mark.integration
def test_core_does_not_import_mlflow():
    code = (
        "import sys, hyperflow.core.trainer, hyperflow.core.assembly, hyperflow.core.loading, hyperflow.config; "
        "sys.exit('mlflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_threads_setting_is_applied():
    previous = torch.get_num_threads()
    try:
        setup_training(build_config({"threads": "1", "epochs": "1"}))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
