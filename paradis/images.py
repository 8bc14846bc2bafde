"""Image tensors: uint8 <-> [-1, 1] floats, and the one grid layout every image output uses."""

from __future__ import annotations

import torch

# The file suffixes every image reader of Paradis accepts (photo folders, digits to classify): what PIL decodes.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the inverse of `denormalize`)."""
    return images.float() / 127.5 - 1.0


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return (images.float() / 2 + 0.5).clamp(0, 1)


def image_grid(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """The one grid layout of generated images (`[n, C, H, W]` in [0, 1]): about sqrt(n) per row, white gaps.
    Used by `paradis predict`, the sample-grid callback and the app, so their grids match."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=nrow or max(1, round(len(images) ** 0.5)), padding=2, pad_value=1.0)
