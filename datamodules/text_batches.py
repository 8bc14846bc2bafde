"""Tokenised texts, their padding collator, and the resumable, sharded training order.

`TrainOrder` and `ResumableDataLoader` tell Lightning where they are in the epoch (`state_dict` /
`load_state_dict`), so resuming a mid-epoch checkpoint goes on from the next batch with the order an
uninterrupted run would have had (restored by `callbacks.resume.ExactResume`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from transformers.trainer_pt_utils import DistributedLengthGroupedSampler, get_length_grouped_indices


class TokenizedTexts(Dataset):
    """Token ids stored as one flat int32 tensor plus offsets (cheap to cache and to index)."""

    def __init__(
        self,
        ids: torch.Tensor,
        offsets: torch.Tensor,
        labels: torch.Tensor | None,
        texts: list[str] | None = None,
    ) -> None:
        self.ids, self.offsets, self.labels, self.texts = ids, offsets, labels, texts

    @classmethod
    def from_lists(
        cls, token_lists: list[list[int]], labels: list[int] | None, texts: list[str] | None = None
    ) -> TokenizedTexts:
        lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.int64)
        offsets = torch.nn.functional.pad(lengths.cumsum(0), (1, 0))  # [0, end of text 0, end of text 1, ...]
        ids = torch.tensor([i for t in token_lists for i in t], dtype=torch.int32)
        return cls(ids, offsets, None if labels is None else torch.tensor(labels, dtype=torch.int64), texts)

    @property
    def lengths(self) -> list[int]:
        return self.offsets.diff().tolist()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        if self.texts is not None:
            item["text"] = self.texts[i]
        return item

    def subset(self, n: int | None) -> TokenizedTexts:
        if n is None or n >= len(self):
            return self
        labels, texts = (None if x is None else x[:n] for x in (self.labels, self.texts))
        return TokenizedTexts(self.ids[: int(self.offsets[n])], self.offsets[: n + 1], labels, texts)


class Collator:
    """transformers' `DataCollatorWithPadding` (pads each batch to its longest text); passes raw texts through."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")

    def __call__(self, items: list[dict]) -> dict:
        texts = [item.pop("text") for item in items] if items and "text" in items[0] else None
        batch = self.pad(items)
        if texts is not None:
            batch["text"] = texts
        return dict(batch)


class TrainOrder(DistributedLengthGroupedSampler):
    """transformers' `DistributedLengthGroupedSampler`, resumable mid-epoch, and a plain shuffle when not grouping.

    Each epoch's order is drawn from `seed + epoch`; with `group_by_length` each run of `batch_size` has similar
    lengths (`get_length_grouped_indices`: less padding). Rank r of R takes every R-th index; under DDP the tail
    that does not divide by R is dropped, so no sample is seen twice in an epoch. `start` (a position in the
    epoch's order, all ranks together) skips what a resumed run already used.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(
            batch_size, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=num_replicas > 1, lengths=lengths
        )
        self.group_by_length = group_by_length
        self.start = 0

    def order(self) -> list[int]:
        """Every index of this epoch, in training order (before sharding)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.group_by_length:
            # 50 batches per mega-batch: transformers' default on data of 200+ batches, also kept on small data
            return get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=50, generator=generator)
        return torch.randperm(len(self.lengths), generator=generator).tolist()

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0  # a restored position applies to one pass only
        self.used = start // self.num_replicas
        for index in self.order()[: self.total_size][start + self.rank :: self.num_replicas]:
            self.used += 1
            yield index

    def state_dict(self) -> dict:
        """`position`: the samples this rank has handed out in the current epoch."""
        return {"epoch": self.epoch, "position": getattr(self, "used", self.start // self.num_replicas)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.start = int(state["epoch"]), int(state["position"]) * self.num_replicas
        if self.start >= self.total_size:  # saved at the end of an epoch: the next one starts from its beginning
            self.epoch, self.start = self.epoch + 1, 0


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `TrainOrder` whose state is its position in the epoch, in batches handed out (not
    the sampler's count, which runs ahead by the workers' prefetch)."""

    sampler: TrainOrder

    def _per_batch(self) -> int:
        return self.batch_size * self.sampler.num_replicas

    def __iter__(self):
        # The DataLoader's iterator is made now (it draws its base seed from torch's RNG, as any DataLoader does);
        # the count starts at the first batch, once a restored position is in place.
        return self._counted(super().__iter__())

    def _counted(self, batches):
        self._handed = self.sampler.start // self._per_batch()  # batches a restored position skips
        for batch in batches:
            self._handed += 1
            yield batch

    def state_dict(self) -> dict:
        handed = getattr(self, "_handed", None)
        position = self.sampler.start // self._per_batch() if handed is None else handed
        return {"epoch": self.sampler.epoch, "position": position}

    def load_state_dict(self, state: dict) -> None:
        self._handed = None
        self.sampler.load_state_dict({"epoch": state["epoch"], "position": int(state["position"]) * self.batch_size})
