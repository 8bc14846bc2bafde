"""The two callbacks every lab run gets (runner/pool.py adds them to each `paradis fit`/`test` command), so a
comparison can be read back (runner/results.py) and trusted:

* `MetricsFile`: every epoch's logged scalars in one JSON file of the run's own, for tools that compare runs.

    <run folder>/metrics.json = {"device": "cpu", "epochs": [{"epoch": 0, "val/acc": ..., ...}, ...],
                                 "test": {"test/acc": ...}}

  A `fit` writes `epochs` (one record per finished training epoch, with that epoch's validation), a
  `test` adds `test`; each write replaces the file atomically, so a reader never sees half of it.
* `InitialWeights`: a SHA-256 of the initial weights, so a comparison can prove its variants started from the
  same point.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from apps.lab.runner.results import METRICS_FILE, WEIGHTS_FILE


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if getattr(value, "numel", lambda: 1)() == 1}


class MetricsFile(Callback):
    """Writes `trainer.callback_metrics` per training epoch (fit) and at the end of `test` to `metrics.json`.

    An epoch is recorded once all its `on_train_epoch_end` hooks have logged (at the next epoch's start,
    or at the end of training), so metrics that other callbacks log then (e.g. `perf/*`) are included.
    """

    def __init__(self, filename: str = METRICS_FILE) -> None:
        self.filename = filename
        self._epochs: list[dict[str, float]] = []
        self._epoch: int | None = None

    def _path(self, trainer: Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.filename

    def _write(self, trainer: Trainer, pl_module: LightningModule, **update: Any) -> None:
        if not trainer.is_global_zero:
            return
        path = self._path(trainer)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(device=pl_module.device.type, **update)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def _record_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._epoch is not None:
            self._epochs.append({"epoch": self._epoch, **scalars(trainer.callback_metrics)})
            self._write(trainer, pl_module, epochs=self._epochs)
        self._epoch = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epochs, self._epoch = [], None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record_epoch(trainer, pl_module)  # the previous epoch, now that all its hooks have logged
        self._epoch = trainer.current_epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record_epoch(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, test=scalars(trainer.callback_metrics))


class InitialWeights(Callback):
    """Writes the parameter count and a SHA-256 of the initial weights to `<run folder>/initial_weights.json`.

    Runs in `setup` (before any step or checkpoint restore), so equal hashes across
    variants prove they started from the same weights.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            tensor = tensor.detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its raw 16-bit words
                tensor = tensor.view(torch.int16)
            digest.update(tensor.numpy().tobytes())
        info = {
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            "trainable_parameters": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "sha256": digest.hexdigest(),
        }
        path = Path(trainer.default_root_dir) / WEIGHTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=1))
