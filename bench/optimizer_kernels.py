"""Epoch time with torch's fused optimizer kernels (``fused=true``, the default) against torch's per-tensor
loop (``fused=false``), through the shipped code: ``setup_training`` + ``Trainer.fit`` on the digits split,
one thread, the default schedule (one-cycle), for sgd (Nesterov), adam and adamw at the corners of the default
classification space (width 64 and 512, depth 1 and 3, batch 32 and 128) and two points between them. Each
round fits every configuration with both settings back to back (which goes first alternates); reported: every round's
ms/epoch, the median and spread per side, the median of the per-round ratios, and the final val_loss of
both (the same update up to float rounding, so it should agree to a few digits).

    python bench/optimizer_kernels.py --rounds 5 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from hyperflow.config import build_config
from hyperflow.core.assembly import load_data, setup_training

CONFIGS = [  # (optimizer, width, depth, batch_size)
    ("adam", 64, 1, 32),
    ("adam", 512, 3, 32),
    ("adam", 512, 3, 128),
    ("adam", 256, 2, 64),
    ("adamw", 512, 3, 32),
    ("adamw", 128, 2, 128),
    ("sgd", 512, 3, 32),
    ("sgd", 64, 1, 128),
]


def fit_once(
    dataset, optimizer: str, width: int, depth: int, batch: int, fused: bool, epochs: int
) -> tuple[float, float]:
    """ms per epoch of one fit (model and optimizer built outside the timing) and its last val_loss."""
    extra = {"momentum": "0.9", "nesterov": "true"} if optimizer == "sgd" else {}
    config = build_config(
        {
            "optimizer": optimizer,
            "width": str(width),
            "depth": str(depth),
            "batch_size": str(batch),
            "epochs": str(epochs),
            "lr": "0.003",
            "weight_decay": "1e-4",
            "threads": "1",
            "fused": str(fused).lower(),
            "seed": "0",
            **extra,
        }
    )
    setup = setup_training(config, dataset=dataset)
    d = setup.dataset
    start = time.perf_counter()
    result = setup.trainer.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    seconds = time.perf_counter() - start
    return 1000 * seconds / epochs, result.history[-1]["val_loss"]


def spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    dataset = load_data(build_config({"data": "digits", "seed": "0"}))
    fit_once(dataset, "adam", 64, 1, 64, True, 1)  # warm-up: first-call costs of both kernels
    fit_once(dataset, "adam", 64, 1, 64, False, 1)
    print(
        f"load average at start: {os.getloadavg()[0]:.2f}; torch {torch.__version__}; threads 1; "
        f"{args.rounds} rounds x {args.epochs} epochs"
    )
    times: dict[tuple, dict[bool, list[float]]] = {c: {True: [], False: []} for c in CONFIGS}
    losses: dict[tuple, dict[bool, float]] = {c: {} for c in CONFIGS}
    for r in range(args.rounds):
        for i, c in enumerate(CONFIGS):
            for fused in (True, False) if (r + i) % 2 == 0 else (False, True):
                ms, loss = fit_once(dataset, *c, fused, args.epochs)
                times[c][fused].append(ms)
                losses[c][fused] = loss
    print(
        "\n| optimizer, width x depth, batch | fused=false ms/epoch, rounds | fused=true ms/epoch, rounds | "
        "median (min-max) false / true | ratio true/false, median of rounds (min-max) | val_loss false / true |"
    )
    print("|---|---|---|---:|---:|---|")
    for c in CONFIGS:
        loop, fused = times[c][False], times[c][True]
        ratios = [f / lo for f, lo in zip(fused, loop)]
        print(
            f"| {c[0]}, {c[1]}x{c[2]}, {c[3]} | {' '.join(f'{v:.1f}' for v in loop)} | "
            f"{' '.join(f'{v:.1f}' for v in fused)} | {spread(loop, 1)} / {spread(fused, 1)} | "
            f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) | "
            f"{losses[c][False]:.4f} / {losses[c][True]:.4f} |"
        )


if __name__ == "__main__":
    main()
