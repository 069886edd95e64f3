"""Trainer callbacks: per-epoch metrics to MLflow in batches, and TensorBoard event files. The only way
the core's trainer reaches tracking."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from hyperflow.core.trainer import Callback, TrainResult
from hyperflow.tracking.background_calls import PendingRun, call_now, run_id_of


class MlflowMetrics(Callback):
    """Sends per-epoch metrics to MLflow in batches: at most one ``log_batch`` call per epoch, and no
    more often than every ``flush_secs`` seconds. A call costs ~15 ms on sqlite and ~50 ms against a
    server, more than a small model's epoch: flushing every epoch made a digits fit 1.27x slower, the
    default 1 s flush 1.03x (bench/tracking.py). ``params`` ride along with the first call; ``send`` (e.g.
    ``BackgroundCalls.submit``) decides when a call goes out, and ``run_id`` may be a run still being created."""

    def __init__(
        self,
        run_id: str | PendingRun,
        flush_secs: float = 1.0,
        prefix: str = "",
        flush_at_end: bool = True,
        params: dict[str, str] | None = None,
        send: Callable[..., Any] = call_now,
    ) -> None:
        self.run_id, self.flush_secs, self.prefix = run_id, flush_secs, prefix
        self.send = send
        self.flush_at_end = flush_at_end  # False: the caller sends ``pending`` with its own last call
        self.pending: list[Metric] = []
        self.pending_params = dict(params or {})
        self.last_flush = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self.last_flush = time.monotonic()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        stamp = int(time.time() * 1000)
        self.pending += [Metric(self.prefix + k, float(v), stamp, epoch) for k, v in metrics.items()]
        if time.monotonic() - self.last_flush >= self.flush_secs:
            self.flush()

    def on_train_end(self, trainer: Any, result: TrainResult) -> None:
        if self.flush_at_end:
            self.flush()

    def flush(self) -> None:
        if self.pending or self.pending_params:
            # the client chunks large batches; new lists, so a call still queued keeps what it was given
            self.send(
                _log_batch, self.run_id, self.pending, [Param(k, str(v)[:6000]) for k, v in self.pending_params.items()]
            )
            self.pending, self.pending_params = [], {}
        self.last_flush = time.monotonic()


def _log_batch(run_id: str | PendingRun, metrics: list[Metric], params: list[Param]) -> None:
    """A module function, not a method: a call sent to another process pickles it by name."""
    MlflowClient().log_batch(run_id_of(run_id), metrics=metrics, params=params)


class TensorBoardLogger(Callback):
    """TensorBoard event files (needs the optional ``tensorboard`` package: ImportError without it)."""

    def __init__(self, logdir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without tensorboard

        self.writer = SummaryWriter(logdir)

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, epoch)

    def on_train_end(self, trainer: Any, result: Any) -> None:
        self.writer.close()
