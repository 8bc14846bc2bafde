"""Fixed-seed sample grids for generators (modules with `sample(n, ...)`), drawn with the EMA weights
(`callbacks.ema`) when an EMA callback is present."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import save_image

from callbacks.ema import averaged_weights
from paradis.images import image_grid


class SampleGrid(Callback):
    """Every `every_n_epochs` training epochs, and once when fit ends, draw `n` images from a fixed seed with
    the module's `sample()` (EMA weights when an EMA callback is used) and write them as one grid to
    TensorBoard (`samples`) and to `<run folder>/samples/epoch_XXXX.png` (XXXX = epochs completed).

    Args:
        every_n_epochs: drawing interval (0: only at the end of fit).
        n: images per grid; `nrow` per row (default: about sqrt(n)).
        seed: the starting noise, the same every time, so grids show progress, not luck.
        steps, sampler: passed to `sample()` (defaults: the module's).
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        n: int = 16,
        seed: int = 0,
        steps: int | None = None,
        sampler: str | None = None,
        nrow: int | None = None,
    ) -> None:
        if every_n_epochs < 0 or n < 1:
            raise ValueError(f"SampleGrid needs every_n_epochs >= 0 and n >= 1, got {every_n_epochs} and {n}.")
        self.every_n_epochs, self.n, self.seed = every_n_epochs, n, seed
        self.steps, self.sampler = steps, sampler
        self.nrow = nrow
        self.paths: list[Path] = []
        self._last_step: int | None = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epochs = trainer.current_epoch + 1
        if self.every_n_epochs and epochs % self.every_n_epochs == 0:
            with averaged_weights(trainer, pl_module):
                self.draw(trainer, pl_module, epochs)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # EMA's on_train_end has already copied the averaged weights into the module.
        if self._last_step != trainer.global_step:
            self.draw(trainer, pl_module, trainer.current_epoch)

    @rank_zero_only
    def draw(self, trainer: Trainer, pl_module: LightningModule, epochs: int) -> Path:
        generator = torch.Generator().manual_seed(self.seed)
        images = pl_module.sample(self.n, steps=self.steps, sampler=self.sampler, generator=generator).cpu()
        grid = image_grid(images, self.nrow)
        path = Path(trainer.default_root_dir) / "samples" / f"epoch_{epochs:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, trainer.global_step)
        self.paths.append(path)
        self._last_step = trainer.global_step
        return path
