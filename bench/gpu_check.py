"""GPU check of the core (no MLflow needed): train the built-in tasks on CUDA and on the CPU side by side.

Run on a machine with a GPU:  PYTHONPATH=src python bench/gpu_check.py
Prints, per task, the device, test metrics and ms/epoch; exits 1 if CUDA is missing or a task fails its
quality floor.
"""

from __future__ import annotations

import sys
import time

import torch

from hyperflow.config import build_config
from hyperflow.core.assembly import setup_training

# (settings, metric, floor, also on the CPU for comparison)
CASES = [
    ({"data": "digits"}, "test_accuracy", 0.95, True),
    ({"data": "digits", "model": "cnn", "channels": 16, "epochs": 20}, "test_accuracy", 0.9, True),
    (
        {"data": "shapes", "model": "unet", "loss": "dice", "epochs": 20, "lr": 0.01, "batch_size": 32},
        "test_dice",
        0.8,
        False,
    ),
    ({"data": "diabetes", "weight_decay": 0.01, "schedule": "cosine", "lr": 0.001}, "test_r2", 0.3, False),
]


def run(overrides: dict, device: str) -> tuple[dict, float, torch.device]:
    threads = 1 if device == "cpu" else 0
    setup = setup_training(build_config({**overrides, "device": device, "progress": False, "threads": threads}))
    d, trainer = setup.dataset, setup.trainer
    start = time.perf_counter()
    result = trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    elapsed = (time.perf_counter() - start) / max(result.epochs_run, 1) * 1000
    return trainer.evaluate(d.X_test, d.y_test, prefix="test_"), elapsed, trainer.device


def main() -> int:
    if not torch.cuda.is_available():
        print("CUDA is not available")
        return 1
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    failed = 0
    for overrides, metric, floor, cpu_too in CASES:
        for device in ("cuda", "cpu") if cpu_too else ("cuda",):
            test, ms, used = run(overrides, device)
            ok = test[metric] >= floor
            failed += not ok
            print(
                f"{overrides!s:<95} {used!s:<7} {metric} {test[metric]:.4f} (floor {floor}) "
                f"{ms:8.1f} ms/epoch {'ok' if ok else 'FAIL'}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
