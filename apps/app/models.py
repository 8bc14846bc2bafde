"""Loading checkpoints for the app: only the registry's classes, `weights_only`, one memory-mapped read per
file version."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from apps.app.discovery import Entry, task_of
from apps.app.tasks import BY_KEY
from paradis.checkpoint import module_from_checkpoint, read_checkpoint


def load_module(path: Path, task: str) -> torch.nn.Module:
    """The task's LightningModule with the checkpoint's weights (for DDPM the EMA weights, which the EMA
    callback saves as `state_dict`), in eval mode. The class is checked before anything is built, on the same
    memory-mapped read the weights then come from."""
    checkpoint = read_checkpoint(path, mmap=True)
    found = task_of(checkpoint, path)
    if found != task:
        raise ValueError(
            f"Checkpoint {path} holds a {BY_KEY[found].title} model, not a {BY_KEY[task].title} one; "
            f"pick it in the {BY_KEY[found].title} tab."
        )
    try:
        return module_from_checkpoint(BY_KEY[task].cls, checkpoint).eval()
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # shape mismatch, missing keys, ...
        raise ValueError(
            f"Checkpoint {path} does not load into its model ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); pass a .ckpt written by `paradis fit`."
        ) from None


class Models:
    """Loads each checkpoint once per (path, mtime, size); one lock per model serialises its inference."""

    def __init__(self, entries: dict[str, list[Entry]]) -> None:
        self.allowed = {e.path: e for es in entries.values() for e in es}
        self._cache: dict[str, tuple[tuple, torch.nn.Module, threading.Lock]] = {}
        self._lock = threading.Lock()

    def get(self, path: str | None, task: str) -> tuple[torch.nn.Module, threading.Lock]:
        entry = self.allowed.get(path or "")
        if entry is None or entry.task != task:
            raise ValueError(
                f"Pick a {BY_KEY[task].title} checkpoint from the list; the app only opens the "
                "checkpoints it was started with."
            )
        file = Path(entry.path)
        if not file.is_file():
            raise FileNotFoundError(
                f"Checkpoint {file} does not exist any more; train it again or restart paradis-app."
            )
        stat = file.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(entry.path)
            if cached is None or cached[0] != version:
                cached = (version, load_module(file, task), threading.Lock())
                self._cache[entry.path] = cached
        return cached[1], cached[2]
