"""Images for the DDPM generator: a folder of photos, or the bundled cat silhouettes.

Both data modules hold the whole (small) dataset as one uint8 tensor `[N, C, H, W]`
and slice batches from it (`TensorBatches`, resumable and sharded per rank). On CUDA
that tensor moves to the GPU once (`data_on_device`), so a batch is one index on the
GPU. The float conversion to [-1, 1], the random horizontal flip and the random crop
(when images are loaded larger than `image_size`, `load_size`) run on the batch, on
the training device (`on_after_batch_transfer`). A folder too large for
`max_memory_mb` is read lazily instead, by torchdata's `StatefulDataLoader` with workers and pinned memory;
a file that fails to decode there (a truncated JPEG) is left out of its batch and named in one warning.
Either training loader resumes mid-epoch exactly (its position rides on this module's state:
paradis/safety/loader_state.py).

A photo becomes a training image by its centre crop (`crop: center`) or by the square around the cat's face
(`crop: cat_face`: found once per folder in `prepare_data`, cached outside the folder; datamodules/cat_faces.py).
The held-out split (`val_fraction`, drawn from `seed`) never reaches training: it gives `val/loss`, FID, and the
held-out crops that benchmarks/cats_score.py's memorisation check compares samples with.

Batches: `(uint8 images,)` from the loaders (`(uint8 images, files that failed to decode)` when read lazily)
-> float images in [-1, 1] in the module. `predict` batches are per-image seeds (`seed + index`) for `DDPM.predict_step`.
Reading files: datamodules/image_folder.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchdata.stateful_dataloader import StatefulDataLoader

from datamodules import cat_faces
from datamodules.image_folder import (
    checked_files,
    lazy_folder,
    load_folder,
    load_silhouettes,
    readable_batch,
    warn_skipped,
)
from datamodules.tensor_batches import TensorBatches
from paradis.images import normalize
from paradis.safety.loader_state import TrainLoaderState, TrainOrder


def crop(images: torch.Tensor, size: int, random: bool) -> torch.Tensor:
    """`size` x `size` crops of `[B, C, H, W]`: one random offset per image (`random`), else the centre."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    if not random:
        top, left = (height - size) // 2, (width - size) // 2
        return images[..., top : top + size, left : left + size]
    n, device = len(images), images.device
    top = torch.randint(0, height - size + 1, (n, 1), device=device) + torch.arange(size, device=device)
    left = torch.randint(0, width - size + 1, (n, 1), device=device) + torch.arange(size, device=device)
    rows = top[:, None, :, None].expand(n, images.shape[1], size, width)
    images = images.gather(2, rows)
    cols = left[:, None, None, :].expand(n, images.shape[1], size, size)
    return images.gather(3, cols)


def split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out indices, training indices) of `n` images: `val_fraction` of them (at least one), drawn from `seed`.
    The data modules' validation split, and what benchmarks/cats_score.py holds out for its memorisation check."""
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"Only {n} image(s): too few to hold out validation images; add images.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_val], order[n_val:]


class _GeneratorData(TrainLoaderState, LightningDataModule):
    """Shared parts: seeded train/val split, in-memory batches (on the GPU when there is one), [-1, 1] +
    flip + crop on the device, predict seeds.

    Args:
        image_size: side of the images the model sees.
        batch_size, eval_batch_size: training and validation batch sizes.
        val_fraction: share of the images held out for `val/loss` and FID (at least one image).
        hflip: random horizontal flips of training images.
        seed: seeds the split and the shuffling.
        num_samples, sample_seed, predict_batch_size: `paradis predict` draws `num_samples` images, image i
            from seed `sample_seed + i` per batch (so the same seed gives the same images).
        data_on_device: on CUDA, move the in-memory uint8 images to the GPU once (no per-batch copies).
    """

    def __init__(
        self,
        image_size: int = 32,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        val_fraction: float = 0.1,
        hflip: bool = True,
        seed: int = 42,
        num_samples: int = 16,
        sample_seed: int = 0,
        predict_batch_size: int = 16,
        data_on_device: bool = True,
    ) -> None:
        super().__init__()
        if min(batch_size, eval_batch_size, predict_batch_size, num_samples) < 1:
            raise ValueError("Batch sizes and data.num_samples must be at least 1; pass positive values.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
        if image_size < 1:
            raise ValueError(f"data.image_size must be a positive number of pixels, got {image_size}.")
        self.image_size = image_size
        self.batch_size, self.eval_batch_size, self.val_fraction = batch_size, eval_batch_size, val_fraction
        self.hflip, self.seed, self.data_on_device = hflip, seed, data_on_device
        self.num_samples, self.sample_seed, self.predict_batch_size = num_samples, sample_seed, predict_batch_size
        self.train = self.val = None  # uint8 tensors, or Datasets when read lazily
        self.workers = 0  # DataLoader workers, for lazily read folders only
        self.unreadable: set[str] = set()  # files of a lazily read folder that failed to decode in training

    def load(self):
        """All images: a uint8 tensor `[N, C, H, W]` (or a Dataset of them)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" or self.train is not None:
            return  # drawing images needs no training data
        images = self.load()
        held_out, kept = split(len(images), self.val_fraction, self.seed)
        if isinstance(images, torch.Tensor):
            self.val, self.train = images[held_out].contiguous(), images[kept].contiguous()
        else:
            self.val = torch.utils.data.Subset(images, held_out.tolist())
            self.train = torch.utils.data.Subset(images, kept.tolist())
        rank_zero_info(f"{type(self).__name__}: {len(self.train)} training and {len(self.val)} validation images")

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _shard(self) -> tuple[int, int]:
        """(ranks, this rank): the share of each epoch this process trains on."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, images, batch_size: int, shuffle: bool):
        ranks, rank = self._shard()
        if isinstance(images, torch.Tensor):
            if self.data_on_device and self.device.type == "cuda":
                images = images.to(self.device)  # once per loader; the split's CPU copy stays for the next
            return TensorBatches(
                (images,),
                batch_size=batch_size,
                shuffle=shuffle,
                drop_last=shuffle and len(images) > batch_size,
                seed=self.seed,
                rank=rank,
                world_size=ranks,
            )
        return StatefulDataLoader(
            images,
            batch_size=batch_size,
            sampler=TrainOrder(len(images), self.seed, ranks, rank) if shuffle else None,
            drop_last=shuffle,
            collate_fn=readable_batch,  # a file that fails to decode is left out of its batch
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed),  # the workers' base seeds, not the global RNG's
        )

    def train_dataloader(self):
        return self.resumable(self._loader(self.train, self.batch_size, shuffle=True))

    def val_dataloader(self):
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self) -> TensorBatches:
        seeds = self.sample_seed + torch.arange(self.num_samples)
        return TensorBatches((seeds,), batch_size=self.predict_batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 -> [-1, 1] floats, cropped to `image_size` (random offsets in training, else the centre),
        with random horizontal flips in training (done here, on the device)."""
        trainer = self.trainer
        if trainer is not None and trainer.predicting:
            return batch
        training = trainer is not None and trainer.training
        if isinstance(batch, (list, tuple)) and len(batch) == 2:  # read lazily: (images, files that failed)
            self._count_unreadable(batch[1])
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        images = normalize(crop(images, self.image_size, random=training))
        if self.hflip and training:
            flip = torch.rand(len(images), device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images

    def _count_unreadable(self, failed: list[str]) -> None:
        """Files of a lazily read folder that failed to decode (left out of their batches), said once each."""
        for path in failed:
            if path not in self.unreadable:
                self.unreadable.add(path)
                rank_zero_warn(
                    f"Skipped {path}: it could not be decoded ({len(self.unreadable)} such file(s) so far); "
                    "replace or remove it."
                )


class ImageFolderDataModule(_GeneratorData):
    """A folder of photos (recursive; JPEG/PNG/WebP/BMP, any size and mode) as `image_size` squares.

    Args:
        data_dir: the folder, e.g. data/cats.
        channels: 3 (RGB) or 1 (greyscale).
        load_size: decode at this side (shorter side resized, centre-cropped; default `image_size`); when
            larger than `image_size`, training takes random `image_size` crops (on the device) and
            validation the centre crop.
        max_memory_mb: hold the decoded images in memory up to this size, else read them lazily with
            `num_workers` DataLoader workers.
        crop: how a photo becomes a training image: `center` (the shorter side resized, the centre square) or
            `cat_face` (the square of 1.5x the cat's face box; photos without a face are not used). The faces
            are found once, in `prepare_data`, which says how many photos have one and writes the crops'
            contact sheet `cat_faces.png` into the run folder.
        cache_dir: where `cat_face` keeps what it found (default `~/.cache/paradis/cat_faces`, or under
            `$XDG_CACHE_HOME`): never in the photo folder, which may be read-only, and shared by every run.
        Other arguments (image_size, batch sizes, val_fraction, hflip, seed, ...): see `_GeneratorData`.
    """

    def __init__(
        self,
        data_dir: str = "data/cats",
        channels: Literal[1, 3] = 3,
        load_size: int | None = None,
        max_memory_mb: int = 4096,
        num_workers: int = 2,
        crop: Literal["center", "cat_face"] = "center",
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()  # in checkpoints: benchmarks/cats_score.py reads the crop and split from them
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {channels}.")
        if crop not in ("center", "cat_face"):
            raise ValueError(f"data.crop must be 'center' or 'cat_face', got '{crop}'.")
        if load_size is not None and load_size < self.image_size:
            raise ValueError(
                f"data.load_size {load_size} is smaller than data.image_size {self.image_size}; "
                "use a load_size at least image_size (or leave it unset)."
            )
        self.data_dir, self.channels, self.load_size = Path(data_dir), channels, load_size or self.image_size
        self.max_memory_mb, self.workers = max_memory_mb, num_workers
        self.crop = crop
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else cat_faces.default_cache_dir()
        self._faces: cat_faces.FaceIndex | None = None

    def faces(self) -> cat_faces.FaceIndex:
        """The folder's cat faces: read from the cache, else detected (and cached) here."""
        if self._faces is None:
            files, others = checked_files(self.data_dir)
            self._faces, _ = cat_faces.face_index(self.data_dir, files, self.cache_dir, log=rank_zero_info)
            warn_skipped(self.data_dir, others + [self.data_dir / name for name in self._faces.unreadable])
        return self._faces

    def prepare_data(self) -> None:
        """`cat_face`: find the faces once (rank 0), say how many photos have one, write the contact sheet."""
        trainer = self.trainer
        if self.crop != "cat_face" or (trainer is not None and trainer.predicting):
            return
        index = self.faces()
        rank_zero_info(index.summary())
        if trainer is not None:
            shown = index.files()[:1024]
            thumbs, _ = load_folder(
                self.data_dir, 32, self.channels, listed=(shown, []), squares=list(index.squares.values())[:1024]
            )
            sheet = cat_faces.contact_sheet(thumbs, Path(trainer.default_root_dir) / "cat_faces.png")
            rank_zero_info(f"The crops ({len(thumbs):,} shown): {sheet}")

    def load(self):
        if self.crop == "cat_face":  # the photos with a face, each cropped to its square
            index = self.faces()
            listed, squares = (index.files(), []), list(index.squares.values())
        else:
            listed, squares = checked_files(self.data_dir), None  # the folder is listed once
        size_mb = len(listed[0]) * self.channels * self.load_size**2 / 2**20
        if size_mb <= self.max_memory_mb:
            images, _ = load_folder(self.data_dir, self.load_size, self.channels, listed=listed, squares=squares)
            rank_zero_info(
                f"Loaded {len(images)} images from {self.data_dir} into memory ({images.numel() / 2**20:.0f} MB)"
            )
            return images
        images = lazy_folder(self.data_dir, self.load_size, self.channels, listed=listed, squares=squares)
        rank_zero_info(f"{len(images)} images in {self.data_dir} (~{size_mb:.0f} MB) read lazily")
        return images


class SilhouetteDataModule(_GeneratorData):
    """The bundled animal-mnist cat silhouettes (1,000 images, 28 px, 1 channel), zero-padded to
    `image_size` (32 by default, so the U-Net can halve it three times) or resized when `resize` is set.
    Other arguments: see `_GeneratorData`."""

    def __init__(self, resize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.image_size < 28 and not resize:
            raise ValueError(
                f"data.image_size {self.image_size} is smaller than the 28 px silhouettes; set data.resize true."
            )
        self.resize = resize

    def load(self) -> torch.Tensor:
        cats = load_silhouettes()
        if self.resize:
            resized = torch.nn.functional.interpolate(
                cats.float(), size=self.image_size, mode="bilinear", antialias=True
            )
            return resized.round().clamp(0, 255).to(torch.uint8)
        pad = self.image_size - 28
        return torch.nn.functional.pad(cats, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
