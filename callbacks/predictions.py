"""Prediction writers: `paradis predict` results into the run folder."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class CSVPredictionWriter(BasePredictionWriter):
    """Writes `<run folder>/<filename>`: one row per input.

    The module's `predict_step` returns a dict with `"input"` (names), `"prediction"`
    (labels) and `"probabilities"` (`[B, C]`); the module's `class_names` name the
    probability columns `p_<class>`. Under DDP each rank writes its own file.
    """

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self._file = None
        self._writer = None
        self.path: Path | None = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        name = Path(self.filename)
        if trainer.world_size > 1:
            name = name.with_stem(f"{name.stem}.rank{trainer.global_rank}")
        self.path = Path(trainer.default_root_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        classes = [str(c) for c in getattr(pl_module, "class_names", [])]
        self._writer.writerow(["input", "prediction", *(f"p_{c}" for c in classes)])

    def write_on_batch_end(
        self, trainer, pl_module, prediction: dict[str, Any], batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        probabilities = prediction["probabilities"].float().cpu()
        labels = prediction["prediction"]
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else labels
        for name, label, probs in zip(prediction["input"], labels, probabilities.tolist()):
            self._writer.writerow([name, label, *(f"{p:.6f}" for p in probs)])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            print(f"Predictions written to {self.path}")
