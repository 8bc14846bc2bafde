"""Epoch wall time, throughput and peak memory, logged for every task.

Peak memory on CUDA is `torch.cuda.max_memory_allocated` over the epoch. On CPU, where torch keeps no such count,
it is the bytes the first training step of the epoch keeps: the parameters, buffers, batch, gradients and
optimizer state, and the activations autograd saves for the backward pass (torch's public `saved_tensors_hooks`),
each storage once. Unlike the process RSS (dominated by the libraries) the figure follows the variant: width,
batch size, optimizer, batch-norm, dropout. It leaves out short-lived temporaries. `perf/memory_kind` says which."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

# `perf/memory_kind` (a number, so that every logger can store it)
CPU_STEP_TENSORS, CUDA_MAX_ALLOCATED = 1, 2


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a (nested) list, tuple or mapping: a batch, an optimizer state."""
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


class StepBytes(torch.autograd.graph.saved_tensors_hooks):
    """The bytes of `tensors` (alive all along) and, while active, of every storage autograd saves for a backward
    pass that is not one of them (a parameter saved by a linear layer), each storage once."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self._seen: set[int] = set()
        self.bytes = self.count(tensors, self._seen)
        super().__init__(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes += self.count([tensor], self._seen)
        return tensor

    @staticmethod
    def count(tensors: list[torch.Tensor], seen: set[int]) -> int:
        """Bytes of the storages of `tensors` whose address is not in `seen` (which gets them)."""
        total = 0
        for storage in (t.untyped_storage() for t in tensors if t.layout == torch.strided):
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total


def step_state(pl_module: LightningModule, trainer: Trainer) -> list[torch.Tensor]:
    """Gradients and optimizer state (both may appear during a step)."""
    grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
    return grads + [t for optimizer in trainer.optimizers for s in optimizer.state.values() for t in tensors_in(s)]


def peak_memory_mb(device: torch.device, cpu_step_bytes: int | None = None) -> float:
    """CUDA: `torch.cuda.max_memory_allocated` over the epoch; CPU: the tensors one training step keeps (weights,
    gradients, optimizer state, batch, activations saved for backward)."""
    # (apps/lab/runner/report.py says this in words: keep its PEAK_MEMORY in step)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (cpu_step_bytes or 0) / 2**20


class EpochStats(Callback):
    """Logs `perf/epoch_time_s`, `perf/samples_per_s`, `perf/peak_memory_mb` and `perf/memory_kind` per epoch."""

    def __init__(self) -> None:
        self._start = self._last_batch_end = 0.0
        self._samples = 0
        self._counter: StepBytes | None = None
        self._cpu_bytes: int | None = None
        self._start_ptrs: set[int] = set()  # storages alive when the measured step started

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._samples = 0
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0 and pl_module.device.type == "cpu":
            kept = [*pl_module.parameters(), *pl_module.buffers(), *tensors_in(batch), *step_state(pl_module, trainer)]
            self._counter = StepBytes(kept)
            self._counter.__enter__()
            self._start_ptrs = set(self._counter._seen)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # No CUDA synchronize here: over a whole epoch the queue depth is negligible.
        self._last_batch_end = time.perf_counter()  # so end-of-epoch validation is not counted
        self._samples += batch_size_of(batch)
        if self._counter is not None:
            # + the gradients and optimizer state the step created (a freed activation's address may be reused)
            self._cpu_bytes = self._counter.bytes + StepBytes.count(step_state(pl_module, trainer), self._start_ptrs)
            self._stop_counting()

    def _stop_counting(self) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_counting()  # a step that raised never reaches on_train_batch_end

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_counting()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_counting()  # (a module whose on_train_batch_start skipped the measured batch)
        elapsed, samples = self._last_batch_end - self._start, self._samples * trainer.world_size
        cuda = pl_module.device.type == "cuda"
        pl_module.log_dict(
            {
                "perf/epoch_time_s": elapsed,
                "perf/samples_per_s": samples / max(elapsed, 1e-9),
                "perf/peak_memory_mb": peak_memory_mb(pl_module.device, self._cpu_bytes),
                "perf/memory_kind": float(CUDA_MAX_ALLOCATED if cuda else CPU_STEP_TENSORS),
            },
            on_epoch=True,
            on_step=False,
            sync_dist=False,
            rank_zero_only=True,
        )
