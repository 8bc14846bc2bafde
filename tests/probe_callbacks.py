"""Test-only callbacks that act on or observe a real run: send it a real signal at a given step (the SIGTERM a
cluster sends, the SIGINT of Ctrl-C), record what `last.ckpt` holds, which samples each DDP rank trained on,
and a fingerprint of each rank's weights and EMA."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import torch
from lightning.pytorch import Callback


class SignalAt(Callback):
    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step, self.signal_name, self.sent = step, signal_name, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent and trainer.is_global_zero:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class RecordLastCheckpoint(Callback):
    """Write, at the start of every training batch, the step that `last.ckpt` holds (or null) to a JSON list."""

    def __init__(self, path: str) -> None:
        self.path, self.seen = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        step = (
            torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"] if last.exists() else None
        )
        self.seen.append(step)
        Path(self.path).write_text(json.dumps(self.seen))


def _rows(batch) -> torch.Tensor:
    """The per-sample tensor of a batch: images (tuple/list batches) or token ids (dict batches)."""
    first = batch["input_ids"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
    return first.detach().cpu().reshape(len(first), -1)


class RecordSamples(Callback):
    """`<path>.rank<R>.json`: {epoch: [a hash of every training sample this rank saw]}."""

    def __init__(self, path: str) -> None:
        self.path, self.seen = path, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        hashes = [hashlib.sha1(row.numpy().tobytes()).hexdigest()[:16] for row in _rows(batch)]
        self.seen.setdefault(str(trainer.current_epoch), []).extend(hashes)
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def fingerprint(tensors) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RecordWeights(Callback):
    """`<path>.rank<R>.json` at the end of fit: fingerprints of this rank's module and EMA weights."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_end(self, trainer, pl_module) -> None:
        averages = [c._average_model for c in trainer.callbacks if getattr(c, "_average_model", None) is not None]
        out = {
            "module": fingerprint(pl_module.state_dict().values()),
            "average": [fingerprint(a.state_dict().values()) for a in averages],
        }
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(out))


class ClockJumpAt(Callback):
    """Move the clock of Lightning's Timer (the `max_time` stop) `hours` ahead after optimizer step `step`: the
    real Timer then stops the run right after that step, whatever the machine's speed."""

    def __init__(self, step: int, hours: float = 24.0) -> None:
        self.step, self.hours = step, hours

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time
        import types

        from lightning.pytorch.callbacks import timer

        if trainer.global_step == self.step:
            offset = self.hours * 3600
            timer.time = types.SimpleNamespace(monotonic=lambda: time.monotonic() + offset)

    def teardown(self, trainer, pl_module, stage) -> None:
        import time

        from lightning.pytorch.callbacks import timer

        timer.time = time


class KillAt(Callback):
    """SIGKILL this process after the batch that makes optimizer step `step` (kill -9: no hook runs)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
