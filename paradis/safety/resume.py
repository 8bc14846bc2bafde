"""Exact resume: what a Lightning 2.6 checkpoint lacks for a resumed run to equal an uninterrupted one.

A checkpoint holds no RNG state: DDPM noise, dropout and augmentation would differ. `ExactResume` stores the RNG
states of every rank, and of the training loaders' own generators, in every checkpoint written during `fit`,
and gives them back at `on_train_start` (after the sanity check, before the first batch is drawn). It also
refuses a budget that would resize the LR schedule. The loaders' positions ride on the data modules' own
state (paradis/safety/loader_state.py), where Lightning documents it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

KEY = "paradis_resume"


def flat(loaders: Any) -> list[Any]:
    """The loaders of `trainer.train_dataloader`: one loader, or a list / dict of them (nested)."""
    loaders = list(loaders.values()) if isinstance(loaders, dict) else loaders
    if isinstance(loaders, (list, tuple)):
        return [leaf for value in loaders for leaf in flat(value)]
    return [] if loaders is None else [loaders]


def loader_generators(trainer: Trainer) -> list[torch.Generator]:
    """The generators the training DataLoaders draw their iterator's base seed from. Without one a DataLoader
    draws it from the global RNG, once more in a run resumed mid-epoch: such loaders get their own generator."""
    generators = []
    for loader in flat(trainer.train_dataloader):
        if isinstance(loader, DataLoader):
            if loader.generator is None:
                loader.generator = torch.Generator().manual_seed(torch.initial_seed())
            generators.append(loader.generator)
    return generators


def rng_states() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states, numpy's array as a tensor for `torch.load(weights_only=True)`."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
    }
    if torch.cuda.is_available():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda", [])
    if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():  # else resumed on another machine:
        torch.cuda.set_rng_state_all(cuda)  # keep this one's CUDA generators
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


def check_same_schedule(saved: dict | None, now: dict | None, ckpt_path: str | None) -> None:
    """Refuse to resume a run whose LR schedule was sized from its budget with another budget (README "Resume")."""
    if not saved or not now or saved["length"] == now["length"]:
        return
    raise ValueError(
        f"{ckpt_path} was trained with a learning-rate schedule sized for {saved['length']} "
        f"{saved['unit']} ({saved['option']}), and this budget sizes it for {now['length']}, which would "
        "change the learning rate of every remaining step; resume with the budget the run started with, "
        "or start a new run with --run_dir NEW_FOLDER (or train with a schedule that does not depend on "
        "the budget)."
    )


class ExactResume(Callback):
    """RNG states and the schedule's size in every checkpoint, restored (and checked) when training (re)starts."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        ranks = [rng_states()]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, rng_states())
        checkpoint[KEY] = {
            "rng": ranks,
            "loader_generators": [g.get_state() for g in loader_generators(trainer)],
            "schedule": getattr(pl_module, "schedule_budget", None),
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(KEY)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pending, self._pending = self._pending, None
        generators = loader_generators(trainer)
        if not pending:
            return
        check_same_schedule(pending.get("schedule"), getattr(pl_module, "schedule_budget", None), trainer.ckpt_path)
        if len(generators) == len(pending.get("loader_generators", [])):
            for generator, state in zip(generators, pending["loader_generators"]):
                generator.set_state(state)
        ranks = pending["rng"]
        set_rng_states(ranks[trainer.global_rank] if len(ranks) == trainer.world_size else ranks[0])
