"""Images for the DDPM generator: a folder of photos, or the bundled cat silhouettes.

Both data modules hold the whole (small) dataset as one uint8 tensor `[N, C, H, W]`
and slice batches from it (`TensorBatches`); the float conversion to [-1, 1] and
the random horizontal flip run on the batch, on the training device
(`on_after_batch_transfer`). A folder too large for `max_memory_mb` is read
lazily instead, by a `DataLoader` with workers.

Batches: `(uint8 images,)` from the loaders -> float images in [-1, 1] in the
module. `predict` batches are per-image seeds (`seed + index`) for `DDPM.predict_step`.
"""

from __future__ import annotations

import gzip
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image, ImageOps

from datamodules.tensor_batches import TensorBatches
from paradis.bundled import bundled_path
from paradis.images import denormalize, normalize  # noqa: F401  (re-exported for callers of this module)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
CAT_LABEL = 2  # animal-mnist: label 2 = cat


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """One file -> uint8 `[channels, size, size]`: EXIF-rotated, RGB (or grey), shorter side resized to
    `size` and centre-cropped. Raises OSError / UnidentifiedImageError for unreadable files."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB" if channels == 3 else "L")
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)  # resize + centre crop
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.reshape(size, size, -1).copy()).permute(2, 0, 1)


def list_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, recursively, sorted; hidden files are ignored."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def _try_load(path: Path, size: int, channels: int) -> Optional[torch.Tensor]:
    try:
        return load_image(path, size, channels)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def load_folder(folder: str | Path, size: int, channels: int = 3, workers: int = 4) -> tuple[torch.Tensor, list[Path]]:
    """Every readable image under `folder` as one uint8 tensor `[N, C, size, size]`, and their paths.

    Unreadable and non-image files are skipped with one warning that counts them; a folder without any
    readable image is an error."""
    folder = Path(folder)
    files, others = _checked_files(folder)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes outside the GIL
        loaded = list(pool.map(lambda p: _try_load(p, size, channels), files))
    good = [(p, x) for p, x in zip(files, loaded) if x is not None]
    bad = others + [p for p, x in zip(files, loaded) if x is None]
    _warn_skipped(folder, bad)
    if not good:
        raise FileNotFoundError(f"No readable image in {folder}; put JPEG/PNG/WebP/BMP images there.")
    return torch.stack([x for _, x in good]), [p for p, _ in good]


def _checked_files(folder: Path) -> tuple[list[Path], list[Path]]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Image folder {folder} does not exist; point --data.data_dir at a folder of JPEG/PNG/WebP/BMP images."
        )
    files, others = list_files(folder)
    if not files:
        raise FileNotFoundError(f"Image folder {folder} holds no JPEG/PNG/WebP/BMP images; add images there.")
    return files, others


def _warn_skipped(folder: Path, bad: list[Path]) -> None:
    if bad:
        examples = ", ".join(str(p.relative_to(folder)) for p in bad[:3])
        rank_zero_warn(f"Skipped {len(bad)} unreadable or non-image file(s) in {folder} (e.g. {examples}).")


class ImageFiles(torch.utils.data.Dataset):
    """Lazy reading for folders too large to hold in memory: one uint8 image per item."""

    def __init__(self, files: list[Path], size: int, channels: int) -> None:
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], self.size, self.channels)


def load_silhouettes() -> torch.Tensor:
    """The 1,000 animal-mnist cat silhouettes (label 2) as uint8 `[1000, 1, 28, 28]`."""
    with gzip.open(bundled_path("animal_mnist_data"), "rb") as f:
        data = pickle.load(f, encoding="latin1")
    with gzip.open(bundled_path("animal_mnist_labels"), "rb") as f:
        labels = pickle.load(f, encoding="latin1")
    data, labels = np.asarray(data), np.asarray(labels).reshape(-1)
    cats = data[labels == CAT_LABEL].reshape(-1, 1, 28, 28)
    return torch.from_numpy(np.ascontiguousarray(cats, dtype=np.uint8))


# -- data modules -----------------------------------------------------------------------------------
class _GeneratorData(LightningDataModule):
    """Shared parts: seeded train/val split, in-memory batches, [-1, 1] + flip on the device, predict seeds.

    Args:
        batch_size, eval_batch_size: training and validation batch sizes.
        val_fraction: share of the images held out for `val/loss` (at least one image).
        hflip: random horizontal flips of training images.
        seed: seeds the split and the shuffling.
        num_samples, sample_seed, predict_batch_size: `paradis predict` draws `num_samples` images, image i
            from seed `sample_seed + i` per batch (so the same seed gives the same images).
    """

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        val_fraction: float = 0.1,
        hflip: bool = True,
        seed: int = 42,
        num_samples: int = 16,
        sample_seed: int = 0,
        predict_batch_size: int = 16,
    ) -> None:
        super().__init__()
        if min(batch_size, eval_batch_size, predict_batch_size, num_samples) < 1:
            raise ValueError("Batch sizes and data.num_samples must be at least 1; pass positive values.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
        self.batch_size, self.eval_batch_size, self.val_fraction = batch_size, eval_batch_size, val_fraction
        self.hflip, self.seed = hflip, seed
        self.num_samples, self.sample_seed, self.predict_batch_size = num_samples, sample_seed, predict_batch_size
        self.train = self.val = None  # uint8 tensors, or Datasets when read lazily
        self.workers = 0  # DataLoader workers, for lazily read folders only

    def load(self):
        """All images: a uint8 tensor `[N, C, H, W]` (or a Dataset of them)."""
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        if stage == "predict" or self.train is not None:
            return  # drawing images needs no training data
        images = self.load()
        n_val = max(1, round(len(images) * self.val_fraction))
        if len(images) - n_val < 1:
            raise ValueError(f"Only {len(images)} image(s): too few to hold out validation images; add images.")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        if isinstance(images, torch.Tensor):
            self.val, self.train = images[order[:n_val]].contiguous(), images[order[n_val:]].contiguous()
        else:
            self.val = torch.utils.data.Subset(images, order[:n_val].tolist())
            self.train = torch.utils.data.Subset(images, order[n_val:].tolist())
        rank_zero_info(f"{type(self).__name__}: {len(self.train)} training and {len(self.val)} validation images")

    def _loader(self, images, batch_size: int, shuffle: bool):
        trainer = self.trainer
        if isinstance(images, torch.Tensor):
            return TensorBatches(
                (images,), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle and len(images) > batch_size,
                seed=self.seed, rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1,
            )
        return torch.utils.data.DataLoader(
            images, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle, num_workers=self.workers,
            persistent_workers=self.workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self) -> TensorBatches:
        seeds = self.sample_seed + torch.arange(self.num_samples)
        return TensorBatches((seeds,), batch_size=self.predict_batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 -> [-1, 1] floats, with random horizontal flips in training (done here, on the device)."""
        trainer = self.trainer
        if trainer is not None and trainer.predicting:
            return batch
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        images = normalize(images)
        if self.hflip and trainer is not None and trainer.training:
            flip = torch.rand(len(images), device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images


class ImageFolderDataModule(_GeneratorData):
    """A folder of photos (recursive; JPEG/PNG/WebP/BMP, any size and mode) as `image_size` RGB squares.

    Args:
        data_dir: the folder, e.g. data/cats.
        image_size: side in pixels after resizing the shorter side and centre-cropping.
        channels: 3 (RGB) or 1 (greyscale).
        max_memory_mb: hold the decoded images in memory up to this size, else read them lazily with
            `num_workers` DataLoader workers.
        Other arguments: see `_GeneratorData`.
    """

    def __init__(
        self,
        data_dir: str = "data/cats",
        image_size: int = 128,
        channels: int = 3,
        max_memory_mb: int = 4096,
        num_workers: int = 2,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        val_fraction: float = 0.05,
        hflip: bool = True,
        seed: int = 42,
        num_samples: int = 16,
        sample_seed: int = 0,
        predict_batch_size: int = 16,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, val_fraction, hflip, seed, num_samples, sample_seed, predict_batch_size)
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {channels}.")
        if image_size < 1:
            raise ValueError(f"data.image_size must be a positive number of pixels, got {image_size}.")
        self.data_dir, self.image_size, self.channels = Path(data_dir), image_size, channels
        self.max_memory_mb, self.workers = max_memory_mb, num_workers

    def load(self):
        files, _ = _checked_files(self.data_dir)
        size_mb = len(files) * self.channels * self.image_size**2 / 2**20
        if size_mb <= self.max_memory_mb:
            images, _ = load_folder(self.data_dir, self.image_size, self.channels)
            rank_zero_info(f"Loaded {len(images)} images from {self.data_dir} into memory ({images.numel() / 2**20:.0f} MB)")
            return images
        readable, bad = [], []
        for path in files:  # header check only: cheap, catches non-images and most corrupt files
            try:
                with Image.open(path):
                    readable.append(path)
            except (OSError, ValueError):
                bad.append(path)
        _warn_skipped(self.data_dir, bad + list_files(self.data_dir)[1])
        if not readable:
            raise FileNotFoundError(f"No readable image in {self.data_dir}; put JPEG/PNG/WebP/BMP images there.")
        rank_zero_info(f"{len(readable)} images in {self.data_dir} (~{size_mb:.0f} MB) read lazily")
        return ImageFiles(readable, self.image_size, self.channels)


class SilhouetteDataModule(_GeneratorData):
    """The bundled animal-mnist cat silhouettes (1,000 images, 28 px, 1 channel), zero-padded to
    `image_size` (32 by default, so the U-Net can halve it three times) or resized when `resize` is set."""

    def __init__(
        self,
        image_size: int = 32,
        resize: bool = False,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        val_fraction: float = 0.1,
        hflip: bool = True,
        seed: int = 42,
        num_samples: int = 16,
        sample_seed: int = 0,
        predict_batch_size: int = 16,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, val_fraction, hflip, seed, num_samples, sample_seed, predict_batch_size)
        if image_size < 28 and not resize:
            raise ValueError(f"data.image_size {image_size} is smaller than the 28 px silhouettes; set data.resize true.")
        self.image_size, self.resize = image_size, resize

    def load(self) -> torch.Tensor:
        cats = load_silhouettes()
        if self.resize:
            resized = torch.nn.functional.interpolate(cats.float(), size=self.image_size, mode="bilinear", antialias=True)
            return resized.round().clamp(0, 255).to(torch.uint8)
        pad = self.image_size - 28
        return torch.nn.functional.pad(cats, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
