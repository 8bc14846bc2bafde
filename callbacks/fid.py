"""FID and KID (torchmetrics) between a generator's samples and held-out real images.

Every `every_n_epochs` validation epochs (with the EMA weights, which validation already uses) and in
`paradis test`, the callback gathers the real validation/test images as they pass through the module,
draws as many samples with the module's `sample()` (at most `max_images` of each), and logs `val/fid`,
`val/kid` (`test/...`) to every logger (TensorBoard in `paradis`).

Features: the 2048-d pool features of torchmetrics' Inception-v3 (`feature: 2048`, the FID
convention; needs `pip install torch-fidelity` and the weights, downloaded once into the torch hub
cache). If those cannot be had (offline, not installed) one line says FID/KID are skipped and training
goes on. Any `nn.Module` mapping float images in [0, 1] `[N, 3, H, W]` to `[N, D]` features can be
passed instead (`feature=`), e.g. for tests; figures from such a module are not comparable to published FIDs.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


def make_metrics(feature: Union[int, torch.nn.Module], subset_size: int):
    """torchmetrics' FID and KID on the same features; raises if the Inception weights are unavailable."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fid = FrechetInceptionDistance(feature=feature, normalize=True)
    return fid, KernelInceptionDistance(feature=feature, subset_size=subset_size, normalize=True)


class FID(Callback):
    """Logs `<stage>/fid` and `<stage>/kid` (KID mean) for a generator with `sample(n, steps=, sampler=,
    generator=)` returning images in [0, 1].

    Args:
        every_n_epochs: compute during validation every N epochs (0: only in `paradis test`).
        max_images: real and generated images compared (at most the validation set's size).
        steps, sampler, seed: passed to `sample()`; the same seed each time, so epochs are comparable.
        batch_size: images drawn per `sample()` call.
        feature: 2048 (Inception-v3 pool features) or an `nn.Module` feature extractor.
        kid_subset_size: KID subset size (capped at the number of images).
    """

    def __init__(self, every_n_epochs: int = 10, max_images: int = 1000, steps: Optional[int] = 50,
                 sampler: Optional[str] = "ddim", seed: int = 0, batch_size: int = 100,
                 feature: Union[int, torch.nn.Module] = 2048, kid_subset_size: int = 100) -> None:
        if every_n_epochs < 0 or max_images < 2 or batch_size < 1:
            raise ValueError("FID needs every_n_epochs >= 0, max_images >= 2 and batch_size >= 1.")
        self.every_n_epochs, self.max_images, self.steps, self.sampler = every_n_epochs, max_images, steps, sampler
        self.seed, self.batch_size, self.feature, self.kid_subset_size = seed, batch_size, feature, kid_subset_size
        self.real: list[torch.Tensor] = []
        self.available: Optional[bool] = None  # None: not tried yet
        self.last: dict[str, float] = {}

    def _active(self, trainer: Trainer, stage: str) -> bool:
        if trainer.sanity_checking or self.available is False:
            return False
        if stage == "val":
            return self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return True

    def _collect(self, batch) -> None:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        have = sum(len(x) for x in self.real)
        if have < self.max_images and images.is_floating_point():
            self.real.append(((images[: self.max_images - have].detach().float() + 1) / 2).clamp(0, 1).cpu())

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.real = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active(trainer, "val"):
            self._collect(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active(trainer, "test"):
            self._collect(batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer, "val"):
            self.compute(pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer, "test"):
            self.compute(pl_module, "test")

    def compute(self, pl_module: LightningModule, stage: str) -> dict[str, float]:
        """FID and KID between the collected real images and as many samples; logged as `<stage>/fid|kid`."""
        real, self.real = (torch.cat(self.real) if self.real else None), []
        if real is None or len(real) < 2:
            return {}
        try:
            fid, kid = make_metrics(self.feature, min(self.kid_subset_size, len(real)))
        except Exception as error:  # noqa: BLE001 - offline, torch-fidelity missing: say so once, go on
            self.available = False
            rank_zero_info(f"FID/KID skipped: the Inception-v3 feature extractor is unavailable "
                           f"({str(error).strip().splitlines()[0][:150] if str(error).strip() else type(error).__name__}); "
                           "training goes on (online with `pip install torch-fidelity`, the weights are downloaded once).")
            return {}
        self.available = True
        device = pl_module.device
        fid, kid = fid.to(device), kid.to(device)
        generator = torch.Generator().manual_seed(self.seed)
        drawn = 0
        while drawn < len(real):
            n = min(self.batch_size, len(real) - drawn)
            fake = pl_module.sample(n, steps=self.steps, sampler=self.sampler, generator=generator).float()
            batch_real = real[drawn : drawn + n].to(device)
            for metric in (fid, kid):
                metric.update(rgb(batch_real), real=True)
                metric.update(rgb(fake), real=False)
            drawn += n
        self.last = {f"{stage}/fid": float(fid.compute()), f"{stage}/kid": float(kid.compute()[0])}
        for name, value in self.last.items():
            pl_module.log(name, value)  # the metrics already gathered every rank's features
        return self.last


def rgb(images: torch.Tensor) -> torch.Tensor:
    """Grey `[N, 1, H, W]` -> `[N, 3, H, W]` (Inception wants three channels)."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
