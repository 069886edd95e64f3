"""The suite's objectives, one code for every method: ``objective(params, trial)`` reports a value per epoch with
``trial.report(step, value)`` (hyperflow's handle, or :class:`OptunaTrial` around Optuna's) and returns the
trial's value; a pruned trial ends with the exception its handle raised.

Each call appends one line to the search's trial log (JSON lines, so trials run in worker processes count too):
the epochs it reported (its units of work), how it ended (``ok``: every epoch; ``stopped``: pruned or cut off by
the budget; ``failed``: diverged), its value and the seconds spent inside the objective.

- :class:`SurrogateObjective`: an LCBench task; the value after epoch e is the surrogate's ``val_cross_entropy``
  (the whole curve from one 52-row call, then reported epoch by epoch); a finished trial's value is epoch 52's.
- :class:`TrainerObjective`: a built-in table trained by hyperflow's ``setup_training`` + ``Trainer`` (bench/search.py's
  protocol: its space, at most 20 epochs at a constant lr, one thread, the seed's split and initialisation); the
  value after each epoch is ``val_loss``; a finished trial's value is its best epoch's (the weights the trainer
  keeps).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lcbench

REAL_TASKS = ("digits", "breast_cancer", "diabetes")  # bench/search.py's task, a classification, a regression
REAL_EPOCHS = 20


class Diverged(RuntimeError):
    """A trial whose loss became non-finite: it fails (hyperflow goes on; Optuna is told to catch it)."""


class TrialLog:
    """The trials of one search, appended as JSON lines as they end."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:  # one short write per trial: whole lines even from several processes
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def units(self) -> int:
        return sum(t["units"] for t in self.read())


class Objective:
    """Runs one trial, recording it in the log however it ends."""

    epochs: int

    def __init__(self, log: TrialLog) -> None:
        self.log = log

    def __call__(self, params: dict[str, Any], trial: Any) -> float:
        record: dict[str, Any] = {"params": params, "units": 0, "status": "stopped", "value": None}
        started = time.perf_counter()
        try:
            record["value"] = self.run(params, trial, record)
            record["status"] = "ok"
            return record["value"]
        except Diverged:
            record["status"] = "failed"
            raise
        finally:
            record["seconds"] = time.perf_counter() - started
            self.log.append(record)

    def run(self, params: dict[str, Any], trial: Any, record: dict[str, Any]) -> float:
        raise NotImplementedError


class SurrogateObjective(Objective):
    epochs = lcbench.EPOCHS

    def __init__(self, log: TrialLog, task: str) -> None:
        super().__init__(log)
        self.task, self.surrogate = task, lcbench.Surrogate()

    def run(self, params: dict[str, Any], trial: Any, record: dict[str, Any]) -> float:
        values = self.surrogate.curve(self.task, params)
        for step, value in enumerate(values, 1):
            record["units"] = step
            trial.report(step, value)
        return values[-1]


class TrainerObjective(Objective):
    epochs = REAL_EPOCHS

    def __init__(self, log: TrialLog, task: str, seed: int) -> None:
        from search import BASE

        from hyperflow.config import build_config

        super().__init__(log)
        self.base = build_config({**BASE, "data": task, "epochs": REAL_EPOCHS, "seed": seed})
        self._dataset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}  # a worker process loads the data itself

    def run(self, params: dict[str, Any], trial: Any, record: dict[str, Any]) -> float:
        import torch

        from hyperflow.core.assembly import load_data, setup_training
        from hyperflow.core.trainer import Callback

        torch.set_num_threads(1)
        if self._dataset is None:
            self._dataset = load_data(self.base)
        d = self._dataset

        class Report(Callback):
            def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
                record["units"] = epoch
                value = metrics["val_loss"]
                if not math.isfinite(value):
                    raise Diverged(f"val_loss {value} at epoch {epoch}")
                trial.report(epoch, value)

        setup = setup_training(self.base.replace(**params), dataset=d, callbacks=[Report()])
        result = setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
        return result.best_val_loss


def make_objective(task: str, seed: int, log: TrialLog) -> Objective:
    return TrainerObjective(log, task, seed) if task in REAL_TASKS else SurrogateObjective(log, task)


def task_space(task: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The task's space in hyperflow's format, and the keys that are integers on a log scale."""
    if task in REAL_TASKS:
        from search import SPACE

        return SPACE, ()
    return lcbench.SPACE, ("batch_size", "max_units")


def epochs_of(task: str) -> int:
    return REAL_EPOCHS if task in REAL_TASKS else lcbench.EPOCHS


def known_tasks() -> list[str]:
    return [*(lcbench.task_ids() if lcbench.available() else []), *REAL_TASKS]
