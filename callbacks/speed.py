"""Epoch wall time, throughput and peak memory, logged for every task."""

from __future__ import annotations

import resource
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            size = batch_size_of(item)
            if size:
                return size
    return 0


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on GPU, peak process RSS on CPU (Linux reports ru_maxrss in KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EpochStats(Callback):
    """Logs `perf/epoch_time_s`, `perf/samples_per_s` and `perf/peak_memory_mb` once per training epoch.

    Per step it only adds an integer, so it costs nothing measurable.
    """

    def __init__(self) -> None:
        self._start = self._last_batch_end = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._samples = 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # No CUDA synchronize here: over a whole epoch the queue depth is negligible.
        self._samples += batch_size_of(batch)
        self._last_batch_end = time.perf_counter()  # so end-of-epoch validation is not counted

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        elapsed = self._last_batch_end - self._start
        samples = self._samples * trainer.world_size
        pl_module.log_dict(
            {
                "perf/epoch_time_s": elapsed,
                "perf/samples_per_s": samples / max(elapsed, 1e-9),
                "perf/peak_memory_mb": peak_memory_mb(pl_module.device),
            },
            on_epoch=True,
            on_step=False,
            sync_dist=False,
            rank_zero_only=True,
        )
