"""Objectives of a user's own for tests/test_objective.py: a plain PyTorch loop, a scikit-learn model, one that
prunes, fails or waits; importable as ``user_objectives:<name>`` (tests/ is on the path of the tests and of the
processes they start)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow

import hyperflow


def torch_loop(params: dict, trial) -> float:
    """A linear model fitted by SGD to y = 3x, reporting the validation loss per epoch."""
    import torch

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"])
    for epoch in range(1, params["epochs"] + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(x), y).item()
        trial.report(epoch, val, train_loss=loss.item())
    return val


def sklearn_ridge(params: dict, trial) -> dict:
    """Ridge regression on the diabetes set, its model logged in the trial's run."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error, r2_score

    X, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=params["alpha"]).fit(X[:300], y[:300])
    predicted = model.predict(X[300:])
    mlflow.log_param("n_train", 300)  # the trial's run is the active run
    mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return {"loss": mean_squared_error(y[300:], predicted) / 1000, "r2": r2_score(y[300:], predicted)}


def constant(params: dict, trial) -> float:
    """Reports params['x'] at steps 1-4 (the median pruner stops a trial behind the earlier ones); a pruned trial
    cleans up (metric ``cleaned_up``) and lets TrialPruned through."""
    try:
        for step in range(1, 5):
            trial.report(step, params["x"])
    except hyperflow.TrialPruned:
        mlflow.log_metric("cleaned_up", 1)
        raise
    return params["x"]


def collector_on(params: dict, trial) -> dict:
    """Loss params['x']; metrics ``collector_on``: whether Python's garbage collector runs while the trial does,
    ``frozen``: how many objects it leaves alone (``gc.get_freeze_count``)."""
    import gc

    return {"loss": params["x"], "collector_on": float(gc.isenabled()), "frozen": float(gc.get_freeze_count())}


def fails_above_half(params: dict, trial) -> float:
    trial.report(1, params["x"])
    if params["x"] > 0.5:
        raise ValueError(f"x={params['x']} is too big")
    return params["x"]


def always_fails(params: dict, trial) -> float:
    raise RuntimeError("broken objective")


def steps(params: dict, trial) -> float:
    """Reports ``params['n']`` steps (a unit of work each)."""
    for step in range(1, params["n"] + 1):
        trial.report(step, params["x"] + 1 / step)
    return params["x"]


def waits_at_trial_two(params: dict, trial) -> float:
    """Trial 2 waits until the file $HOLD_FILE exists (the test kills the search meanwhile); the others return."""
    hold = Path(os.environ["HOLD_FILE"])
    trial.report(1, params["x"])
    while trial.number == 2 and not hold.exists():
        time.sleep(0.05)
    return params["x"]


def pid_of_worker(params: dict, trial) -> float:
    """Its process's id as a metric: trials at once run in worker processes."""
    mlflow.log_metric("pid", os.getpid())
    trial.report(1, params["x"])
    return params["x"]
