"""The LCBench surrogate (YAHPO Gym's ``lcbench``, ``../shared/benchmarks/lcbench/``): its 34 tasks, its space, a
configuration's learning curve (``val_cross_entropy`` after epochs 1..52, one batched ONNX call) and each task's
best known value.

The space as the benchmark defines it: ``batch_size`` (16..512) and ``max_units`` (64..1024) integers on a log
scale, ``learning_rate`` log-uniform (1e-4..1e-1), ``momentum``, ``weight_decay``, ``num_layers`` (integer) and
``max_dropout`` uniform; ``epoch`` (1..52) is the fidelity. hyperflow's space format has no log-scale integer, so
:data:`SPACE` declares those two ``loguniform`` and the objective rounds every value of :data:`INTEGERS`; Optuna
draws them with ``suggest_int(log=True)`` (the same distribution up to the rounding).

Best known (:func:`reference`): the lowest final-epoch ``val_cross_entropy`` of 20,000 configurations drawn at
random from the space (seed 0) at full fidelity, per task; the normalising range runs from it to the *median* of
the same 20,000 values (a random configuration's value: the worst values are diverged runs, orders of magnitude
above, which would squash every method's regret towards 0). Cached in ``bench/lcbench_reference.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("LCBENCH_DIR", ROOT.parent / "shared" / "benchmarks" / "lcbench"))
REFERENCE = Path(__file__).resolve().parent / "lcbench_reference.json"
EPOCHS = 52
N_RANDOM = 20_000
DEFAULT_TASKS = (
    "3945 7593 34539 126025 126026 126029 146212 167104 167149 167152 167161 167168 167181 167184 167185 167190 167200"
).split()
SPACE: dict[str, dict[str, Any]] = {
    "batch_size": {"type": "loguniform", "low": 16, "high": 512},
    "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1},
    "momentum": {"type": "uniform", "low": 0.1, "high": 0.99},
    "weight_decay": {"type": "uniform", "low": 1.0e-5, "high": 1.0e-1},
    "num_layers": {"type": "int", "low": 1, "high": 5},
    "max_units": {"type": "loguniform", "low": 64, "high": 1024},
    "max_dropout": {"type": "uniform", "low": 0.0, "high": 1.0},
}
INTEGERS = ("batch_size", "num_layers", "max_units")
INPUTS = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units", "max_dropout")
VALUE = 2  # output column: val_cross_entropy


def available() -> bool:
    return (DATA / "model.onnx").exists()


def task_ids() -> list[str]:
    """The benchmark's 34 OpenML task ids, in its own order."""
    space = json.loads((DATA / "config_space.json").read_text())
    (task,) = (h for h in space["hyperparameters"] if h["name"] == "OpenML_task_id")
    return list(task["choices"])


def as_config(params: dict[str, Any]) -> list[float]:
    """A point of :data:`SPACE` as the surrogate's inputs (integers rounded), in its column order."""
    return [float(round(params[k])) if k in INTEGERS else float(params[k]) for k in INPUTS]


class Surrogate:
    """The ONNX model, loaded on first use with one thread (picklable: the session is not carried)."""

    def __init__(self) -> None:
        self._session: Any = None
        self._codes: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_session": None, "_codes": {}}

    def _load(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(DATA / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._codes = json.loads((DATA / "encoding.json").read_text())["OpenML_task_id"]

    def predict(self, task: str, epochs: np.ndarray, configs: np.ndarray) -> np.ndarray:
        """``val_cross_entropy`` of row i of ``configs`` (columns :data:`INPUTS`) after ``epochs[i]`` epochs."""
        if self._session is None:
            self._load()
        x_cont = np.column_stack([epochs, configs]).astype(np.float32)
        x_cat = np.full((len(x_cont), 1), self._codes[task], dtype=np.int32)
        return self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0][:, VALUE].astype(float)

    def curve(self, task: str, params: dict[str, Any]) -> list[float]:
        """The learning curve of one configuration: its value after each epoch 1..52 (one call of 52 rows)."""
        config = np.tile(as_config(params), (EPOCHS, 1))
        return self.predict(task, np.arange(1, EPOCHS + 1), config).tolist()


def random_configs(n: int, seed: int) -> np.ndarray:
    """``n`` configurations drawn from :data:`SPACE` (log-uniform where it says so), columns :data:`INPUTS`."""
    rng = np.random.default_rng(seed)
    columns = []
    for key in INPUTS:
        d = SPACE[key]
        if d["type"] == "loguniform":
            column = np.exp(rng.uniform(np.log(d["low"]), np.log(d["high"]), n))
        elif d["type"] == "int":
            column = rng.integers(d["low"], d["high"] + 1, n).astype(float)
        else:
            column = rng.uniform(d["low"], d["high"], n)
        columns.append(np.round(column) if key in INTEGERS else column)
    return np.column_stack(columns)


def compute_reference(tasks: list[str], n: int = N_RANDOM, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per task: the best, median and worst final-epoch value of ``n`` random configurations."""
    surrogate, configs, out = Surrogate(), random_configs(n, seed), {}
    for task in tasks:
        values = np.concatenate(
            [
                surrogate.predict(task, np.full(len(chunk), EPOCHS), chunk)
                for chunk in np.array_split(configs, max(1, n // 2000))
            ]
        )
        out[task] = {
            "best": float(values.min()),
            "median": float(np.median(values)),
            "worst": float(values.max()),
        }
    return out


def reference(tasks: list[str]) -> dict[str, dict[str, float]]:
    """The best known and the range of each task, from :data:`REFERENCE` (computed for all 34 tasks when a task
    is missing: about half a minute of one core)."""
    data = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    if any(t not in data.get("tasks", {}) for t in tasks):
        data = {"random_configurations": N_RANDOM, "seed": 0, "tasks": compute_reference(task_ids())}
        REFERENCE.write_text(json.dumps(data, indent=1) + "\n")
    return {t: data["tasks"][t] for t in tasks}
