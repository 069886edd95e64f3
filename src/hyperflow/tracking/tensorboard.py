"""TensorBoard event files as a trainer callback (needs the optional ``tensorboard`` package)."""

from __future__ import annotations

from typing import Any

from torch.utils.tensorboard import SummaryWriter  # raises ImportError without tensorboard

from hyperflow.core.trainer import Callback


class TensorBoardLogger(Callback):
    def __init__(self, logdir: str) -> None:
        self.writer = SummaryWriter(logdir)

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, epoch)

    def on_train_end(self, trainer: Any, result: Any) -> None:
        self.writer.close()
