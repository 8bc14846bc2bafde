"""Timing a Lightning run from inside (used by the GPU check): samples/s between two optimizer steps."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def batch_len(batch) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch[0] if isinstance(batch, (list, tuple)) else batch)


class Clock(Callback):
    """Samples/s from optimizer step `warmup` to step `stop` (default: the end of fit), CUDA synchronised at
    both ends and nowhere else: the losses are kept as tensors and read once, after the timed part."""

    def __init__(self, warmup: int, device: str, stop: int | None = None) -> None:
        self.warmup, self.device, self.stop = warmup, device, stop
        self.start = self.end = None
        self.samples = 0
        self._losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach())
        if trainer.global_step == self.warmup and self.start is None:
            sync(self.device)
            self.start = time.perf_counter()
        elif self.start is not None and self.end is None:
            self.samples += batch_len(batch)
            if trainer.global_step == self.stop:
                self._finish()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.end is None:
            self._finish()

    def _finish(self) -> None:
        sync(self.device)
        self.end = time.perf_counter()

    @property
    def losses(self) -> list[float]:
        return [float(loss) for loss in self._losses]

    @property
    def rate(self) -> float:
        return self.samples / (self.end - self.start)
