"""Reading images from disk for the DDPM data modules: a folder of photos (decoded in threads, unreadable
files skipped with one warning) or the bundled animal-mnist cat silhouettes, as uint8 tensors `[N, C, H, W]`."""

from __future__ import annotations

import gzip
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageOps

from paradis.bundled import bundled_path
from paradis.images import IMAGE_SUFFIXES

CAT_LABEL = 2  # animal-mnist: label 2 = cat


def load_image(path: Path, size: int, channels: int, square: tuple[int, int, int] | None = None) -> torch.Tensor:
    """One file -> uint8 `[channels, size, size]`: EXIF-rotated, RGB (or grey), shorter side resized to
    `size` and centre-cropped, or the `square` (left, top, side: a cat face, datamodules/cat_faces.py) resized
    to `size`. Raises OSError / UnidentifiedImageError for unreadable files."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB" if channels == 3 else "L")
        if square is not None:
            left, top, side = square
            image = image.crop((left, top, left + side, top + side))
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)  # resize + centre crop
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.reshape(size, size, -1).copy()).permute(2, 0, 1)


def list_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, recursively, sorted; hidden files are ignored."""
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def _try_load(path: Path, size: int, channels: int, square: tuple[int, int, int] | None) -> torch.Tensor | None:
    try:
        return load_image(path, size, channels, square)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def load_folder(
    folder: str | Path,
    size: int,
    channels: int = 3,
    workers: int = 4,
    listed: tuple[list[Path], list[Path]] | None = None,
    squares: list[tuple[int, int, int]] | None = None,
) -> tuple[torch.Tensor, list[Path]]:
    """Every readable image under `folder` as one uint8 tensor `[N, C, size, size]`, and their paths.

    Unreadable and non-image files are skipped with one warning that counts them; a folder without any
    readable image is an error. `listed`: the folder's `checked_files`, when the caller has listed it already.
    `squares`: one crop square per listed image file (`load_image`), in place of the centre crop."""
    folder = Path(folder)
    files, others = listed or checked_files(folder)
    squares = squares or [None] * len(files)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes outside the GIL
        loaded = list(pool.map(lambda p, s: _try_load(p, size, channels, s), files, squares))
    good = [(p, x) for p, x in zip(files, loaded) if x is not None]
    bad = others + [p for p, x in zip(files, loaded) if x is None]
    warn_skipped(folder, bad)
    if not good:
        raise no_readable_image(folder, len(bad))
    return torch.stack([x for _, x in good]), [p for p, _ in good]


def checked_files(folder: Path) -> tuple[list[Path], list[Path]]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Image folder {folder} does not exist; point --data.data_dir at a folder of JPEG/PNG/WebP/BMP images."
        )
    files, others = list_files(folder)
    if not files:
        raise FileNotFoundError(f"Image folder {folder} holds no JPEG/PNG/WebP/BMP images; add images there.")
    return files, others


def warn_skipped(folder: Path, bad: list[Path]) -> None:
    if bad:
        examples = ", ".join(str(p.relative_to(folder)) for p in bad[:3])
        rank_zero_warn(f"Skipped {len(bad)} unreadable or non-image file(s) in {folder} (e.g. {examples}).")


def no_readable_image(folder: Path, n_bad: int) -> FileNotFoundError:
    return FileNotFoundError(
        f"No readable image in {folder} ({n_bad} file(s) there could not be read as images); "
        "put JPEG/PNG/WebP/BMP images there."
    )


def lazy_folder(
    folder: str | Path,
    size: int,
    channels: int,
    listed: tuple[list[Path], list[Path]] | None = None,
    squares: list[tuple[int, int, int]] | None = None,
) -> ImageFiles:
    """The readable images under `folder`, decoded on access (for folders too large for memory). Only the
    headers are checked here: cheap, and it catches non-images and most corrupt files. `squares`: as in
    `load_folder`."""
    folder = Path(folder)
    files, others = listed or checked_files(folder)
    squares = squares or [None] * len(files)
    readable, bad = [], []
    for path, square in zip(files, squares):
        try:
            with Image.open(path):
                readable.append((path, square))
        except (OSError, ValueError):
            bad.append(path)
    warn_skipped(folder, bad + others)
    if not readable:
        raise no_readable_image(folder, len(bad))
    return ImageFiles([p for p, _ in readable], size, channels, [s for _, s in readable])


class ImageFiles(torch.utils.data.Dataset):
    """Lazy reading for folders too large to hold in memory: one uint8 image per item (its crop square, if any).
    Batch the items with `readable_batch`."""

    def __init__(self, files: list[Path], size: int, channels: int, squares: list | None = None) -> None:
        self.files, self.size, self.channels = files, size, channels
        self.squares = squares or [None] * len(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        """(the image, or None when the file fails to decode, e.g. a truncated JPEG; its path)."""
        path = self.files[index]
        return _try_load(path, self.size, self.channels, self.squares[index]), str(path)


def readable_batch(items: list[tuple[torch.Tensor | None, str]]) -> tuple[torch.Tensor, list[str]]:
    """`ImageFiles` items -> (the decoded images, stacked; the paths of those that failed to decode), the
    loader's `collate_fn`: a file that fails is left out of its batch, as `load_folder` leaves it out of memory."""
    images = [image for image, _ in items if image is not None]
    failed = [path for image, path in items if image is None]
    if not images:
        raise OSError(
            f"None of the {len(items)} images of a batch could be decoded (e.g. {failed[0]}); "
            "the folder holds many broken files: remove them, or re-export the photos."
        )
    return torch.stack(images), failed


def load_silhouettes() -> torch.Tensor:
    """The 1,000 animal-mnist cat silhouettes (label 2) as uint8 `[1000, 1, 28, 28]`."""
    with gzip.open(bundled_path("animal_mnist_data"), "rb") as f:
        data = pickle.load(f, encoding="latin1")
    with gzip.open(bundled_path("animal_mnist_labels"), "rb") as f:
        labels = pickle.load(f, encoding="latin1")
    data, labels = np.asarray(data), np.asarray(labels).reshape(-1)
    cats = data[labels == CAT_LABEL].reshape(-1, 1, 28, 28)
    return torch.from_numpy(np.ascontiguousarray(cats, dtype=np.uint8))
