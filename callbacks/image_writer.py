"""Prediction writer for generators: `paradis predict` images as PNGs plus one grid in the run folder."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torchvision.utils import save_image

from paradis.images import image_grid


class ImageWriter(BasePredictionWriter):
    """Writes `<run folder>/<folder>/sample_XXXX.png` for every generated image and `grid.png` with all of them.

    The module's `predict_step` returns `{"images": [B, C, H, W] floats in [0, 1], ...}`. Under DDP each rank
    writes into its own `<folder>/rank<N>/`.
    """

    def __init__(self, folder: str = "predictions", grid: bool = True, nrow: int | None = None) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.grid, self.nrow = folder, grid, nrow
        self.path: Path | None = None
        self._images: list[torch.Tensor] = []

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.path = Path(trainer.default_root_dir) / self.folder
        if trainer.world_size > 1:
            self.path = self.path / f"rank{trainer.global_rank}"
        self.path.mkdir(parents=True, exist_ok=True)
        for old in self.path.glob("sample_*.png"):  # a previous predict's images would mix with these
            old.unlink()
        self._images = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        for image in prediction["images"].float().cpu():
            save_image(image, self.path / f"sample_{len(self._images):04d}.png")
            self._images.append(image)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.grid and self._images:
            save_image(image_grid(torch.stack(self._images), self.nrow), self.path / "grid.png")
        print(f"{len(self._images)} images and grid.png written to {self.path}")
        self._images = []
