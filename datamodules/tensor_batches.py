"""Batches sliced from tensors held in memory (the airbench way).

A `DataLoader` over a `TensorDataset` indexes one sample at a time and collates them again; for MNIST-sized data
that costs more than the model step. Here an epoch is one `randperm` and each batch one index per tensor.
Under DDP every rank draws the same permutation (seeded by `seed + epoch`) and takes its own interleaved share,
truncated so every rank sees as many batches (Lightning injects no sampler into a plain iterable).

Resumable: the state is `{"epoch", "position"}` (batches of that epoch's permutation already handed out).
Lightning calls `loader.sampler.set_epoch(epoch)` before every epoch (this object is its own `sampler`);
the data module's state saves and restores it (paradis/safety/loader_state.py), so a run resumed mid-epoch goes
on from the next batch of the same permutation. Outside Lightning (no `set_epoch`) each iteration is an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch


class TensorBatches:
    batch_sampler = None  # (Lightning reads `batch_sampler` wherever it finds a `sampler`)

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}; pass a positive --data.batch_size.")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tuple(tensors), batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.position = 0  # batches of `epoch` already handed out
        self._epoch_set = False  # set_epoch() was called since the last iteration started
        self._resuming = False  # load_state_dict() was called: the next iteration continues at `position`
        self._iterated = False

    @property
    def sampler(self) -> TensorBatches:
        """Lightning calls `set_epoch` on a loader's `sampler` at every epoch start."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if not (self._resuming and epoch == self.epoch):  # a restored mid-epoch state waits for its epoch
            self.epoch, self.position, self._resuming = epoch, 0, False
        self._epoch_set = True

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._resuming = True

    def __len__(self) -> int:
        n = len(self.tensors[0]) // self.world_size  # samples this rank sees per epoch
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> torch.Tensor | None:
        """This rank's sample indices for `self.epoch` (None: the tensors in order, one process)."""
        total = len(self.tensors[0])
        order = None
        if self.shuffle:
            order = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        if self.world_size > 1:
            idx = torch.arange(total) if order is None else order
            order = idx[self.rank : total // self.world_size * self.world_size : self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self._resuming:
            self._resuming = False
        elif self._epoch_set or not self._iterated:
            self.position = 0
        else:  # plain use, no set_epoch: each iteration is the next epoch
            self.epoch, self.position = self.epoch + 1, 0
        self._epoch_set, self._iterated = False, True
        order = self._order()
        if order is not None:  # the permutation is drawn on the CPU (one generator for every device)
            order = order.to(self.tensors[0].device)  # data held on the GPU is indexed on the GPU
        for i in range(min(self.position, len(self)), len(self)):
            self.position = i + 1
            if order is None:
                yield tuple(t[i * self.batch_size : (i + 1) * self.batch_size] for t in self.tensors)
            else:
                index = order[i * self.batch_size : (i + 1) * self.batch_size]
                # index_select, not t[index]: for a 64-row batch of [N, 28, 28] uint8 it is ~3 us against ~110 us
                yield tuple(t.index_select(0, index) for t in self.tensors)
