"""Exact resume: what a Lightning checkpoint lacks for a resumed run to equal an uninterrupted one.

A Lightning 2.6 checkpoint holds the weights, optimizer and scheduler states, loop progress and the state of
stateful training loaders (`CombinedLoader._state_dicts`), but:
  * no RNG state (torch, CUDA, numpy, python): DDPM noise and timesteps, dropout and augmentation would differ;
  * the loader state is taken when the checkpoint is written: after an exception in the middle of a batch the
    loader has already handed that batch out, while the loops will run it again;
  * the loader state is dropped when `configure_optimizers` reads `trainer.estimated_stepping_batches`
    (the train loader is then built before the checkpoint is restored, Lightning issue #20550).
`ExactResume` stores, in every checkpoint written during `fit`, the RNG states of every rank and the training
loaders' states with `position` set to the batches the loops have processed, and gives both back at
`on_train_start` (after the sanity check, before the first batch). A loader (or a `DataLoader`'s
`batch_sampler` / `sampler`) takes part when it has `state_dict()` / `load_state_dict()`. A state's `position`
key, if it has one, counts what that object handed out in the current epoch (batches for a loader or a batch
sampler, samples for a sampler: `datamodules.tensor_batches.TensorBatches` is the example); it is rewritten
to what the loops have processed.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch import Callback, LightningModule, Trainer

KEY = "paradis_resume"


def stateful_part(loader: Any) -> Optional[tuple[Any, int]]:
    """(the object holding a training loader's position, items it hands out per batch): the loader itself or
    its batch sampler (1 batch), or its sampler (`batch_size` samples)."""
    candidates = ((loader, 1), (getattr(loader, "batch_sampler", None), 1),
                  (getattr(loader, "sampler", None), getattr(loader, "batch_size", None) or 1))
    for candidate, per_batch in candidates:
        if callable(getattr(candidate, "state_dict", None)) and callable(getattr(candidate, "load_state_dict", None)):
            return candidate, per_batch
    return None


def train_loaders(trainer: Trainer) -> list[tuple[Any, int]]:
    combined = trainer.fit_loop._combined_loader
    return [] if combined is None else [part for loader in combined.flattened if (part := stateful_part(loader))]


def rng_states() -> dict[str, Any]:
    """Lightning's RNG states, with numpy's array as a tensor so `torch.load(weights_only=True)` reads them."""
    states = _collect_rng_states(include_cuda=torch.cuda.is_available())
    name, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    states = dict(states)
    name, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    if len(states.get("torch.cuda", [])) != (torch.cuda.device_count() if torch.cuda.is_available() else 0):
        states.pop("torch.cuda", None)  # resumed on another machine: keep this one's CUDA generators
    _set_rng_states(states)


class ExactResume(Callback):
    """RNG states and training-loader positions in every checkpoint, restored when training (re)starts."""

    def __init__(self) -> None:
        self._pending: Optional[dict[str, Any]] = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        rng = rng_states()
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, rng)
        else:
            ranks = [rng]
        processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        loaders = []
        for part, per_batch in train_loaders(trainer):
            state = dict(part.state_dict())
            if "position" in state:  # what the loops will count as done, not what was fetched
                state["position"] = processed * per_batch
            loaders.append(state)
        checkpoint[KEY] = {"rng": ranks, "loaders": loaders}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(KEY)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pending, self._pending = self._pending, None
        if not pending:
            return
        ranks = pending["rng"]
        set_rng_states(ranks[trainer.global_rank] if len(ranks) == trainer.world_size else ranks[0])
        parts = train_loaders(trainer)
        if len(parts) == len(pending["loaders"]):
            for (part, _), state in zip(parts, pending["loaders"]):
                part.load_state_dict(state)
