"""The one way Paradis reads a checkpoint, and the one check that it holds the expected model."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint without executing pickled code (`weights_only=True`), or say clearly why it cannot
    be read. `mmap=True` maps tensors instead of reading them (cheap peeks at the small fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist; pass the path of a .ckpt written by `paradis fit`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises many types for truncated / foreign / legacy files
        if mmap:  # legacy (non-zip) files cannot be memory-mapped: read them normally
            return read_checkpoint(path)
        raise ValueError(
            f"Checkpoint {path} cannot be read ({type(err).__name__}): it is corrupt, truncated or not a "
            "Lightning checkpoint; pass a .ckpt written by `paradis fit`."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"Checkpoint {path} holds no model state; pass a .ckpt written by `paradis fit`.")
    return checkpoint


def class_path(checkpoint: dict) -> str | None:
    """`package.module.Class` of the LightningModule that wrote the checkpoint (saved by LightningCLI)."""
    return (checkpoint.get("hyper_parameters") or {}).get("_class_path")


def check_class(checkpoint: dict, path: str | Path, expected: Iterable[str], hint: str = "") -> str:
    """The checkpoint's class path if it is one of `expected` (class paths), else one sentence naming both.
    A checkpoint without a class path (written outside LightningCLI) is taken as the first expected class."""
    expected = tuple(expected)
    found = class_path(checkpoint) or expected[0]
    if found not in expected:
        names = " or ".join(e.rsplit(".", 1)[-1] for e in expected)
        raise ValueError(
            f"Checkpoint {path} holds a {found.rsplit('.', 1)[-1]}, not a {names}; "
            f"{hint or 'use the config (or app tab) of the task the checkpoint was trained for.'}"
        )
    return found


def module_from_checkpoint(cls: type, checkpoint: dict, state: str = "state_dict") -> Any:
    """A `cls` LightningModule built from a checkpoint already read (e.g. memory-mapped): what Lightning's
    `load_from_checkpoint` does, without reading the file again. Only `cls`'s own arguments are passed (a
    LightningCLI checkpoint also holds the data-linked `class_names` and its `_class_path`)."""
    accepted = inspect.signature(cls.__init__).parameters
    hparams = checkpoint.get("hyper_parameters") or {}
    module = cls(**{k: v for k, v in hparams.items() if k in accepted and k != "self"})
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint[state])
    return module


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def progress(checkpoint: dict) -> tuple[int, int]:
    """(training epochs completed, optimizer steps) of a checkpoint written during `fit`. An epoch whose batches
    are all done counts as completed even if the checkpoint was written before its epoch-end hooks ran."""
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs = (loop.get("epoch_progress") or {}).get("total") or {}
    batches = loop.get("epoch_loop.batch_progress") or {}
    done = int(epochs.get("processed", checkpoint.get("epoch", 0)))
    if int(epochs.get("started", 0)) > done and batches.get("is_last_batch"):
        done += 1
    return done, int(checkpoint.get("global_step", 0))
