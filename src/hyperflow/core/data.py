"""The Dataset the trainer reads: splits as in-memory float tensors (the trainer indexes them directly) plus a
:class:`Preprocessor` fitted on the training split only, which the logged MLflow model reuses so that it
accepts raw rows (:mod:`hyperflow.core.loading` makes one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hyperflow.core.preprocessing import Preprocessor

if TYPE_CHECKING:  # torch is imported when data is loaded, not when a command starts
    import torch


@dataclass
class Dataset:
    """Splits as tensors plus what the model, the metrics and the logged model need to know."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    output_size: int
    preprocessor: Preprocessor
    fingerprint: str
    source: str
    classes: list | None = None  # original labels, index = class id
    target: str | None = None
    target_mean: float = 0.0  # regression targets are standardised for training
    target_std: float = 1.0
    image_shape: tuple[int, ...] | None = None  # tables that are images too (digits: 1x8x8)
    raw_example: Any = None  # a few raw input rows, for the model's signature
    raw_all: Any = None  # the raw data (frame, or (X, y) arrays) for mlflow.log_input
    split_index: dict[str, np.ndarray] | None = None  # row positions in raw_all of train / val / test

    @property
    def default_model_name(self) -> str:
        """The registered name used when none is given: ``hyperflow-<data>`` for a built-in set,
        ``hyperflow-<file>-<target>`` for a file (so two targets of one file never share a name)."""
        builtin = self.source.startswith("builtin:")
        return f"hyperflow-{self.name}" if builtin or not self.target else f"hyperflow-{self.name}-{self.target}"

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "val": len(self.X_val), "test": len(self.X_test)}

    @property
    def memory_bytes(self) -> int:
        """The bytes it takes in memory: its tensors and the raw data they came from (each worker holds a copy)."""
        import torch

        tensors = sum(v.nbytes for v in vars(self).values() if isinstance(v, torch.Tensor))
        raw = self.raw_all
        if isinstance(raw, pd.DataFrame):
            return tensors + int(raw.memory_usage(deep=True).sum())
        return tensors + sum(np.asarray(part).nbytes for part in raw or ())
