"""Tokenised texts, their padding collator, and the length-grouped training order."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from transformers.trainer_pt_utils import get_length_grouped_indices

from paradis.safety.loader_state import TrainOrder


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


class LengthGroupedOrder(TrainOrder):
    """`TrainOrder` whose runs of `batch_size` have similar lengths (`group_by_length`: less padding), drawn as
    transformers' `LengthGroupedSampler` draws them; a plain shuffle when not grouping."""

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(len(lengths), seed, num_replicas=num_replicas, rank=rank)
        self.lengths, self.batch_size, self.group_by_length = lengths, batch_size, group_by_length

    def order(self) -> list[int]:
        if not self.group_by_length:
            return super().order()
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        # 50 batches per mega-batch: transformers' default on data of 200+ batches, also kept on small data
        return get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=50, generator=generator)
