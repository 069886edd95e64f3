"""One metrics implementation: the numbers the trainer logs (``val_accuracy``, ``test_rmse``, …) and the
numbers promotion scores a registered model by agree on the same predictions, and both match the
textbook formulas (scikit-learn's)."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as sk

from hyperflow.config import build_config
from hyperflow.core import metrics
from hyperflow.core.assembly import setup_training
from hyperflow.core.trainer import Trainer
from hyperflow.tracking.model import predict_bundle
from hyperflow.workflows.scoring import EvalRows, evaluation_rows, score

CLASSES = np.array(["ant", "bee", "cat", "dog"])


class Served:
    """Stands in for a loaded pyfunc model: returns what the served model would for these rows."""

    def __init__(self, predict):
        self._predict = predict

    def predict(self, features):
        return self._predict(features)


def trainer_for(task: str, loss_fn, target_std: float = 1.0) -> Trainer:
    """A trainer whose model passes its input through: ``evaluate(outputs, y)`` scores ``outputs``."""
    dummy = torch.zeros(1, requires_grad=True)
    return Trainer(
        torch.nn.Identity(),
        loss_fn,
        torch.optim.SGD([dummy], lr=0.1),
        task=task,
        epochs=1,
        batch_size=8,
        target_std=target_std,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_trainer_and_scoring_agree(seed):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(0, 2, (300, 4)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 3, 300))  # class 3 never true: it counts only where predicted
    logits[:40, 3] += 10  # ... and it is predicted for some rows
    trained = trainer_for("classification", torch.nn.CrossEntropyLoss()).evaluate(logits, labels, prefix="val_")
    probs = torch.softmax(logits, 1).numpy()
    out = pd.DataFrame(
        {"prediction": CLASSES[probs.argmax(1)], **{f"probability_{c}": probs[:, i] for i, c in enumerate(CLASSES)}}
    )
    scored = score(Served(lambda _: out), EvalRows(None, CLASSES[labels.numpy()], "classification", "test"))
    assert trained["val_accuracy"] == scored["accuracy"]
    assert trained["val_f1"] == pytest.approx(scored["f1"], rel=1e-12)
    assert trained["val_loss"] == pytest.approx(scored["log_loss"], rel=1e-5)  # cross-entropy = log loss
    truth, pred = labels.numpy(), logits.argmax(1).numpy()
    assert scored["accuracy"] == pytest.approx(sk.accuracy_score(truth, pred))
    assert scored["f1"] == pytest.approx(sk.f1_score(truth, pred, average="macro"))
    reference = sk.log_loss(truth, probs.astype(np.float64), labels=[0, 1, 2, 3])
    assert scored["log_loss"] == pytest.approx(reference, rel=1e-5)


def test_regression_in_standardised_and_original_units_agree():
    rng = np.random.default_rng(3)
    mean, std = 150.0, 40.0
    target = torch.tensor(rng.normal(0, 1, 200), dtype=torch.float32)
    output = (target + torch.tensor(rng.normal(0, 0.5, 200), dtype=torch.float32)).reshape(-1, 1)
    trained = trainer_for("regression", torch.nn.MSELoss(), target_std=std).evaluate(
        output, target.reshape(-1, 1), prefix="test_"
    )
    served = output.reshape(-1).double().numpy() * std + mean
    truth = target.double().numpy() * std + mean
    scored = score(Served(lambda _: pd.DataFrame({"prediction": served})), EvalRows(None, truth, "regression", "t"))
    for name in ("rmse", "mae", "r2"):
        assert trained[f"test_{name}"] == pytest.approx(scored[name], rel=1e-9), name
    assert scored["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, served)))
    assert scored["mae"] == pytest.approx(sk.mean_absolute_error(truth, served))
    assert scored["r2"] == pytest.approx(sk.r2_score(truth, served))


def test_segmentation_dice_agrees_and_an_empty_mask_predicted_empty_is_perfect():
    rng = np.random.default_rng(4)
    masks = torch.tensor(rng.random((12, 1, 8, 8)) > 0.6, dtype=torch.float32)
    logits = torch.tensor(rng.normal(0, 1, (12, 1, 8, 8)), dtype=torch.float32) + 2 * (masks - 0.5)
    masks[0] = 0
    logits[0] = -5  # nothing there, nothing predicted
    trained = trainer_for("segmentation", torch.nn.BCEWithLogitsLoss()).evaluate(logits, masks, prefix="val_")
    scored = score(Served(lambda _: torch.sigmoid(logits).numpy()), EvalRows(None, masks.numpy(), "segmentation", "t"))
    assert trained["val_dice"] == pytest.approx(scored["dice"], rel=1e-12)
    pred, truth = (logits > 0).numpy().reshape(12, -1), masks.numpy().reshape(12, -1).astype(bool)
    by_image = [1.0 if not (p.any() or t.any()) else sk.f1_score(t, p) for p, t in zip(pred, truth)]
    assert scored["dice"] == pytest.approx(np.mean(by_image))
    assert metrics.segmentation_metrics(np.zeros((1, 4), bool), np.zeros((1, 4)))["dice"] == 1.0


@pytest.mark.parametrize("data", ["wine", "diabetes"])
def test_a_trained_model_scores_the_same_served_as_in_training(data):
    """The trainer's test metrics and promotion's scores of the same model on the same test split, the
    latter through the served model's own prediction path (raw rows in)."""
    config = build_config({"data": data, "epochs": "2", "progress": "false"})
    setup = setup_training(config)
    d = setup.dataset
    setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    trained = setup.trainer.evaluate(d.X_test, d.y_test, prefix="test_")
    bundle = {
        "model_spec": setup.model_spec,
        "preprocessor": d.preprocessor,
        "task": d.task,
        "classes": d.classes,
        "target_mean": d.target_mean,
        "target_std": d.target_std,
    }
    model = setup.trainer.model.cpu().eval()
    scored = score(Served(lambda rows: predict_bundle(bundle, model, rows)), evaluation_rows(config))
    shared = [k for k in scored if f"test_{k}" in trained]
    assert shared == (["accuracy", "f1"] if d.task == "classification" else ["rmse", "mae", "r2"])
    for name in shared:
        assert trained[f"test_{name}"] == pytest.approx(scored[name], rel=1e-5, abs=1e-9), name
