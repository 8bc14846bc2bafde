"""Epoch wall time, throughput and peak memory, logged for every task.

Peak memory on CUDA is `torch.cuda.max_memory_allocated` over the epoch. On CPU the first training step of each
epoch runs under `LiveTensorBytes`, which counts the tensors the step starts with (parameters, gradients,
optimizer state, batch) and every tensor it allocates, and keeps the peak of what is alive: unlike the process
RSS (dominated by the libraries) the figure differs between variants. `perf/memory_kind` says which was logged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Iterable, Iterator, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.multiprocessing.reductions import StorageWeakRef

from paradis.lightning_internals import TorchDispatchMode

# `perf/memory_kind` (a number, so that every logger can store it)
CPU_STEP_TENSORS, CUDA_MAX_ALLOCATED = 1, 2


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a (nested) list, tuple or mapping: a batch, an optimizer state, an operator's outputs."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (Mapping, list, tuple)):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from tensors_in(item)


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    return next((size for item in items if (size := batch_size_of(item))), 0)


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of CPU tensor storages alive (once per storage; a weak reference tells when it is freed),
    and their peak, while the mode is active."""

    def __init__(self, already_alive: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.alive: dict[int, tuple[StorageWeakRef, int]] = {}
        self.bytes = self.peak = 0
        for tensor in already_alive:
            self._track(tensor)

    def _track(self, tensor: torch.Tensor) -> None:
        if tensor.device.type != "cpu" or tensor.layout != torch.strided:
            return
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size and key not in self.alive:
            self.alive[key] = (StorageWeakRef(storage), size)
            self.bytes += size

    def _sweep(self) -> None:
        for key in [k for k, (ref, _) in self.alive.items() if ref.expired()]:
            self.bytes -= self.alive.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()  # before registering: a freed storage's address may be reused by an output
        for tensor in tensors_in(out):
            self._track(tensor)
        self.peak = max(self.peak, self.bytes)
        return out


def step_state(pl_module: LightningModule, trainer: Trainer, batch: Any) -> list[torch.Tensor]:
    """The tensors a training step starts with: parameters, buffers, gradients, optimizer state, the batch."""
    tensors = [*pl_module.parameters(), *pl_module.buffers()]
    tensors += [p.grad for p in pl_module.parameters() if p.grad is not None]
    for optimizer in trainer.optimizers:
        tensors += [t for state in optimizer.state.values() for t in tensors_in(state)]
    return tensors + list(tensors_in(batch))


def peak_memory_mb(device: torch.device, cpu_step_peak_bytes: Optional[int] = None) -> float:
    """CUDA: `torch.cuda.max_memory_allocated` over the epoch; CPU: the tensors live at the peak of one training step."""
    # (the lab report quotes this docstring, see apps/lab/report.py)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (cpu_step_peak_bytes or 0) / 2**20


class EpochStats(Callback):
    """Logs `perf/epoch_time_s`, `perf/samples_per_s`, `perf/peak_memory_mb` and `perf/memory_kind` per epoch.
    On CPU the step measured for memory (~10x slower) is left out of time and throughput when there are others."""

    def __init__(self) -> None:
        self._start = self._last_batch_end = 0.0
        self._samples = 0
        self._mode: Optional[LiveTensorBytes] = None
        self._cpu_peak: Optional[int] = None
        self._measured = (0.0, 0)  # (seconds, samples) of the measured step

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._samples = 0
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0 and pl_module.device.type == "cpu":
            self._mode = LiveTensorBytes(step_state(pl_module, trainer, batch))
            self._mode.__enter__()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # No CUDA synchronize here: over a whole epoch the queue depth is negligible.
        now = time.perf_counter()
        if self._mode is not None:
            self._cpu_peak = self._mode.peak
            self._stop_measuring()
            self._measured = (now - self._start, batch_size_of(batch))
            self._start = now = time.perf_counter()  # the clock restarts after the measured step
        else:
            self._samples += batch_size_of(batch)
        self._last_batch_end = now  # so end-of-epoch validation is not counted

    def _stop_measuring(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_measuring()  # a step that raised never reaches on_train_batch_end

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_measuring()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_measuring()  # (a module whose on_train_batch_start skipped the measured batch)
        elapsed, samples = self._last_batch_end - self._start, self._samples
        if samples == 0:  # the measured step was the epoch's only step
            elapsed, samples = self._measured
        samples *= trainer.world_size
        cuda = pl_module.device.type == "cuda"
        pl_module.log_dict({
            "perf/epoch_time_s": elapsed,
            "perf/samples_per_s": samples / max(elapsed, 1e-9),
            "perf/peak_memory_mb": peak_memory_mb(pl_module.device, self._cpu_peak),
            "perf/memory_kind": float(CUDA_MAX_ALLOCATED if cuda else CPU_STEP_TENSORS),
        }, on_epoch=True, on_step=False, sync_dist=False, rank_zero_only=True)
