"""The training loader's position in every checkpoint, on Lightning's documented route: the DataModule's state.

Lightning writes `datamodule.state_dict()` into every checkpoint and gives it back to `load_state_dict` before the
strategy is set up, so before the training loader is first built, also when `configure_optimizers` reads
`trainer.estimated_stepping_batches` and so builds the loader before the loops are restored (Lightning #20550,
which drops the loops' own copy of the loader's state). `train_dataloader()` hands the pending state to the
loader it builds, before any `iter()`, and a run resumed mid-epoch goes on from the next batch.

A loader takes part when it has `state_dict()` / `load_state_dict()` and a `sampler` with `epoch` / `set_epoch`:
`TensorBatches` (in-memory tensors) or torchdata's `StatefulDataLoader` over a `TrainOrder` (texts, photo folders
read lazily).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler


class TrainLoaderState:
    """For a `LightningDataModule`: `state_dict` / `load_state_dict` hold the training loader's position.

    `train_dataloader()` returns `self.resumable(loader)`. The state is the epoch the loader's next batch belongs
    to and, in the middle of an epoch, the loader's own state (after an epoch's last batch the next epoch starts
    afresh, as in a run that never stopped). The loader's sampler gets the epoch before the loader is iterated:
    Lightning calls `set_epoch` only after it has made the first iterator, and a loader with workers draws
    indices as soon as its iterator is made."""

    _train_loader: Any = None
    _pending_train_state: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        if self._train_loader is None:
            return {}
        trainer = getattr(self, "trainer", None)
        epoch = self._train_loader.sampler.epoch
        if trainer is not None and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return {"epoch": epoch + 1}  # the next epoch starts from its beginning, with a new iterator
        return {"train_loader": self._train_loader.state_dict(), "epoch": epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_train_state = state_dict or None

    def resumable(self, loader: Any) -> Any:
        """`loader`, at the position of the checkpoint being resumed, if any (applied once)."""
        self._train_loader = loader
        if self._pending_train_state is not None:
            if "train_loader" in self._pending_train_state:
                loader.load_state_dict(self._pending_train_state["train_loader"])
            loader.sampler.set_epoch(self._pending_train_state["epoch"])
            self._pending_train_state = None
        return loader


class TrainOrder(DistributedSampler):
    """The training order of `size` samples, resumable mid-epoch in torchdata's `StatefulDataLoader`.

    Each epoch's order is drawn from `seed + epoch` (Lightning calls `set_epoch` at every epoch start), so it
    depends on no generator's history. Rank r of R takes every R-th index; under DDP the tail that does not divide
    by R is dropped, so no sample is seen twice in an epoch (Lightning keeps a `DistributedSampler` as it is). The
    state (torchdata's `Stateful` protocol, which the loader saves with every batch, also with workers that read
    ahead) is the epoch and the indices this rank handed out in it."""

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, seed=seed, drop_last=num_replicas > 1)
        self.yielded = 0
        self.resume: dict[str, int] | None = None

    def order(self) -> list[int]:
        """Every index of this epoch, in training order (before sharding)."""
        return torch.randperm(
            len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch)
        ).tolist()

    def __iter__(self) -> Iterator[int]:
        resume, self.resume = self.resume, None  # a restored position applies to one pass only
        return self._indices(resume)

    def _indices(self, resume: dict[str, int] | None) -> Iterator[int]:
        # A position saved in another epoch (one cut short by `limit_train_batches`) does not apply.
        skip = resume["yielded"] if resume is not None and resume["epoch"] == self.epoch else 0
        self.yielded = skip
        for index in self.order()[: self.total_size][self.rank :: self.num_replicas][skip:]:
            self.yielded += 1
            yield index

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume = {"epoch": int(state["epoch"]), "yielded": int(state["yielded"])}
