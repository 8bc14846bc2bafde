"""The DDPM's parts that are diffusers' own: the noise schedule, the U-Net and the exported pipeline.

`make_scheduler` / `make_unet` turn the config's few numbers into diffusers objects (nothing of the
diffusion maths is re-implemented); `build_pipeline` / `export_pipeline` write a stand-alone
`DDPMPipeline` that plain diffusers loads.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from lightning_modules.common import check_choice

Schedule = Literal["linear", "cosine", "quadratic"]
PredictionType = Literal["epsilon", "v_prediction"]
Sampler = Literal["ddim", "ddpm"]
SCHEDULES = Schedule.__args__
PREDICTION_TYPES = PredictionType.__args__
SAMPLERS = Sampler.__args__


def make_scheduler(schedule: Schedule, num_train_timesteps: int, prediction_type: PredictionType) -> DDPMScheduler:
    """DDPM's betas 1e-4..0.02: linear, cosine (Nichol & Dhariwal, `squaredcos_cap_v2`) or quadratic."""
    check_choice("schedule (model.schedule)", schedule, SCHEDULES)
    check_choice("prediction_type (model.prediction_type)", prediction_type, PREDICTION_TYPES)
    kwargs = dict(num_train_timesteps=num_train_timesteps, prediction_type=prediction_type)
    if schedule == "linear":
        return DDPMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, **kwargs)
    if schedule == "cosine":
        return DDPMScheduler(beta_schedule="squaredcos_cap_v2", **kwargs)
    betas = torch.linspace(1e-4**0.5, 0.02**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return DDPMScheduler(trained_betas=betas.tolist(), **kwargs)


def group_count(channels: Sequence[int], most: int = 32) -> int:
    """Largest GroupNorm group count <= `most` that divides every block width."""
    return max(g for g in range(1, most + 1) if all(c % g == 0 for c in channels))


def make_unet(
    sample_size: int,
    in_channels: int,
    model_channels: int,
    channel_mult: Sequence[int],
    num_res_blocks: int,
    attention_resolutions: Sequence[int],
    dropout: float,
    attention_head_dim: int,
) -> UNet2DModel:
    """The seed's U-Net in diffusers terms: one level per `channel_mult` entry (width model_channels * mult),
    `num_res_blocks` ResNet blocks per level, self-attention at the listed resolutions, downsampling between
    levels; the middle block is ResNet + attention + ResNet."""
    widths = [model_channels * m for m in channel_mult]
    resolutions = [sample_size // 2**i for i in range(len(channel_mult))]
    down = ["AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in resolutions]
    up = ["AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D" for r in reversed(resolutions)]
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(widths),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=num_res_blocks,
        dropout=dropout,
        attention_head_dim=attention_head_dim,
        norm_num_groups=group_count(widths),
    )


def check_unet_shape(
    sample_size: int, model_channels: int, channel_mult: Sequence[int], attention_head_dim: int
) -> None:
    """One sentence for a U-Net shape diffusers would reject with a traceback."""
    if not channel_mult or any(m < 1 for m in channel_mult):
        raise ValueError(f"model.channel_mult must be a non-empty list of positive integers, got {list(channel_mult)}.")
    if sample_size % 2 ** (len(channel_mult) - 1):
        raise ValueError(
            f"model.sample_size {sample_size} must be divisible by {2 ** (len(channel_mult) - 1)} "
            f"for {len(channel_mult)} U-Net levels; change sample_size or channel_mult."
        )
    if any(model_channels * m % attention_head_dim for m in channel_mult):
        raise ValueError(
            f"model.attention_head_dim {attention_head_dim} must divide every level width "
            f"(model_channels * channel_mult = {[model_channels * m for m in channel_mult]})."
        )


# -- diffusers interchange ---------------------------------------------------------------------------
def build_pipeline(module) -> DDPMPipeline:
    """A stand-alone diffusers `DDPMPipeline` (a copy of `module.unet` on CPU, contiguous, + the training
    DDPMScheduler) for a DDPM module."""
    unet = copy.deepcopy(module.unet).to("cpu", memory_format=torch.contiguous_format).float().eval()
    unet.disable_gradient_checkpointing()
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(module.noise_scheduler.config))


def export_pipeline(module, out_dir: str | Path) -> Path:
    """Save `module`'s current weights as a pipeline folder that `DDPMPipeline.from_pretrained(out_dir)` loads."""
    out_dir = Path(out_dir)
    build_pipeline(module).save_pretrained(str(out_dir))
    return out_dir
