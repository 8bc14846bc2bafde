"""The run folder's safety rules for `paradis fit` (used by apps/cli.py): the checkpointing, resume and
divergence callbacks every run gets; the folder must be writable before anything starts; a run that fails
before its first training step leaves the folder as it found it; a resume must have budget left; a run
stopped by SIGTERM / Ctrl-C says where its last state is."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from paradis.checkpoint import progress
from paradis.safety.checkpointing import RunCheckpoint
from paradis.safety.divergence import DivergenceGuard
from paradis.safety.resume import ExactResume

CHECKPOINT_DIR = "checkpoints"


def check_writable(folder: Path) -> None:
    """Fail before training, with one sentence naming the folder, when the run folder cannot be written."""
    probe_name = f".paradis-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for where in (folder, folder / CHECKPOINT_DIR):
            if where.is_dir():
                (where / probe_name).write_bytes(b"")
                (where / probe_name).unlink()
        return
    except OSError as err:
        problem = err.strerror or str(err)
    raise PermissionError(  # outside the `except`: the user sees this sentence, not the OSError behind it
        f"The run folder {folder} cannot be written ({problem}); fix its permissions or free space, "
        "or pass --run_dir WRITABLE_FOLDER."
    )


class RunFolderGuard:
    """Remembers what the run folder holds before `fit`; `undo()` removes what a failed start added (the
    TensorBoard event file Lightning opens before the data module's `setup`, the folder itself if it is new)
    and puts back the run's config.yaml. Other files that were there are never touched."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.existed = folder, folder.exists()
        self.before = set(folder.rglob("*")) if self.existed else set()
        config = folder / "config.yaml"  # rewritten by every fit as it starts
        self.config = (config, config.read_bytes()) if config.is_file() else None
        check_writable(folder)

    def undo(self) -> None:
        added = sorted(set(self.folder.rglob("*")) - self.before, key=lambda p: len(p.parts), reverse=True)
        for path in added:  # deepest first: files, then the folders they were in
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        if self.config is not None:
            self.config[0].write_bytes(self.config[1])
        if not self.existed:
            with contextlib.suppress(OSError):
                self.folder.rmdir()


def reliability_callbacks(callbacks: list, run_dir: Path, model: Any, intervals: dict) -> list:
    """Exact resume, the divergence guard, best.ckpt (Lightning's `ModelCheckpoint`) and last.ckpt (the run's
    latest state, also refreshed every N minutes / M steps), unless the config already has its own."""
    added: list = [kind() for kind in (ExactResume, DivergenceGuard) if not any(isinstance(c, kind) for c in callbacks)]
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        folder = run_dir / CHECKPOINT_DIR
        best = ModelCheckpoint(
            dirpath=folder,
            filename="best",
            monitor=getattr(model, "monitor", None),
            mode=getattr(model, "monitor_mode", "min"),
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        added += [best, RunCheckpoint(folder, intervals.get("every_n_minutes"), intervals.get("every_n_steps") or 0)]
    return added


def check_budget_left(checkpoint: dict, ckpt_path: str, trainer: Trainer) -> None:
    """Resuming a run that already reached this --trainer.max_epochs / max_steps would train nothing."""
    epochs, steps = progress(checkpoint)
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    if max_steps is not None and max_steps != -1 and steps >= max_steps:
        raise ValueError(
            f"{ckpt_path} has already reached step {steps} and --trainer.max_steps is {max_steps}; "
            f"pass a larger --trainer.max_steps (e.g. {steps + max(1, steps)}) to train on."
        )
    if max_epochs is not None and max_epochs != -1 and epochs >= max_epochs:
        raise ValueError(
            f"{ckpt_path} has already trained {epochs} epoch(s) and --trainer.max_epochs is "
            f"{max_epochs}; pass a larger --trainer.max_epochs (e.g. {epochs + 1}) to train on."
        )


def exit_stopped(trainer: Trainer) -> None:
    """SIGTERM or Ctrl-C ended `fit` (RunCheckpoint saved first): say where last.ckpt is and exit with 128 + the
    signal number, as a shell does."""
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, RunCheckpoint)), None)
    reason = (checkpoint.stop_reason if checkpoint else None) or "SIGTERM"
    if trainer.is_global_zero:
        where = f"{checkpoint.last_path} holds it" if checkpoint else "no last.ckpt is written by this config"
        print(
            f"paradis: stopped by {reason} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            f"{where}: resume with `--ckpt_path last`.",
            file=sys.stderr,
        )
    sys.exit(128 + (signal.SIGINT if reason == "Ctrl-C" else signal.SIGTERM))
