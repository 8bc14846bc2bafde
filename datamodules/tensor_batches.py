"""Batches sliced from tensors held in memory (the airbench way).

A `DataLoader` over a `TensorDataset` indexes one sample at a time and collates
them again; for MNIST-sized data that costs more than the model step. Here an
epoch is one `randperm` and each batch is one fancy-index per tensor.

Under DDP every rank draws the same permutation (seeded by `seed + epoch`) and
takes its own interleaved share, truncated so every rank sees the same number of
batches; Lightning does not inject a sampler into a plain iterable, so sharding
is done here from `rank`/`world_size`.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch


class TensorBatches:
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
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def _num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return len(self.tensors[0]) // self.world_size if self.world_size > 1 else len(self.tensors[0])

    def __len__(self) -> int:
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        total = len(self.tensors[0])
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(total, generator=generator)
        else:
            order = None
        self.epoch += 1
        if self.world_size > 1:
            idx = torch.arange(total) if order is None else order
            order = idx[self.rank : self._num_samples() * self.world_size : self.world_size]
        n = self._num_samples()
        for i in range(len(self)):
            if order is None:
                yield tuple(t[i * self.batch_size : min((i + 1) * self.batch_size, n)] for t in self.tensors)
            else:
                index = order[i * self.batch_size : (i + 1) * self.batch_size]
                # index_select, not t[index]: for a 64-row batch of [N, 28, 28] uint8 it is ~3 us against ~110 us
                yield tuple(t.index_select(0, index) for t in self.tensors)
