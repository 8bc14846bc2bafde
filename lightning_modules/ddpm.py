"""DDPM image generator: a diffusers `UNet2DModel` trained to predict noise.

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,   loss = MSE(unet(x_t, t), eps)

(or the v-target with `prediction_type: v_prediction`). Noise schedules, the
forward process and the reverse steps are diffusers' `DDPMScheduler` /
`DDIMScheduler`; nothing of the diffusion maths is re-implemented here.

Images enter as floats in [-1, 1] `[B, C, H, W]` (the data modules scale them);
`sample()` returns floats in [0, 1]. The same `sample()` serves the sample-grid
callback, `paradis predict` and the Gradio app.

EMA weights: the `EMA` callback (Lightning's `EMAWeightAveraging`, see
callbacks/sample_grid.py) swaps the averaged weights into this module for
validation, copies them in when training ends (so the final grid and the
exported pipeline use them) and saves them as the checkpoint's `state_dict`
(the raw weights go to `current_model_state`). So anything that loads a
checkpoint's `state_dict` (`predict`, the app, `apps.export_ddpm`) gets EMA
weights.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from lightning.pytorch import LightningModule

from lightning_modules.common import check_choice, check_positive, check_probability, decay_param_groups
from paradis.images import denormalize

SCHEDULES = ("linear", "cosine", "quadratic")
PREDICTION_TYPES = ("epsilon", "v_prediction")
SAMPLERS = ("ddim", "ddpm")
VAL_SEED = 1234  # fixed timesteps and noise for val/loss, so epochs are comparable


def make_scheduler(schedule: str, num_train_timesteps: int, prediction_type: str) -> DDPMScheduler:
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


def group_count(channels: list[int], most: int = 32) -> int:
    """Largest GroupNorm group count <= `most` that divides every block width."""
    return max(g for g in range(1, most + 1) if all(c % g == 0 for c in channels))


def make_unet(
    sample_size: int,
    in_channels: int,
    model_channels: int,
    channel_mult: list[int],
    num_res_blocks: int,
    attention_resolutions: list[int],
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


class DDPM(LightningModule):
    """Denoising diffusion model over `in_channels` x `sample_size`^2 images.

    Args:
        sample_size, in_channels: image side (pixels) and channels (3 = RGB, 1 = grey).
        model_channels, channel_mult, num_res_blocks, attention_resolutions, dropout, attention_head_dim:
            the U-Net shape (see `make_unet`); the seed's 128 px model is 192, [1, 2, 3, 4], 2, [16], 0.1.
        schedule: linear, cosine or quadratic betas over `num_train_timesteps` steps.
        prediction_type: what the U-Net predicts: epsilon (the noise) or v_prediction.
        lr, weight_decay: AdamW (no decay on biases / norms); `warmup_steps` of linear warm-up, then cosine
            decay to zero over the run (constant after warm-up when the run length is unknown).
        sample_steps, sampler, eta: defaults of `sample()` (predict, the app): ddim or ddpm; eta is DDIM's noise.
        export_on_fit_end: write `<run folder>/pipeline/` (a diffusers DDPMPipeline) when fit ends.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 1,
        model_channels: int = 32,
        channel_mult: list[int] = [1, 2, 2],
        num_res_blocks: int = 1,
        attention_resolutions: list[int] = [8],
        dropout: float = 0.0,
        attention_head_dim: int = 32,
        schedule: str = "cosine",
        num_train_timesteps: int = 1000,
        prediction_type: str = "epsilon",
        lr: float = 2e-4,
        warmup_steps: int = 200,
        weight_decay: float = 0.0,
        sample_steps: int = 50,
        sampler: str = "ddim",
        eta: float = 0.0,
        export_on_fit_end: bool = True,
    ) -> None:
        super().__init__()
        check_choice("sampler (model.sampler)", sampler, SAMPLERS)
        check_positive("Learning rate (model.lr)", lr)
        check_positive("Weight decay (model.weight_decay)", weight_decay, allow_zero=True)
        check_positive("Warm-up steps (model.warmup_steps)", warmup_steps, allow_zero=True)
        check_probability("Dropout (model.dropout)", dropout)
        for name, value in (("sample_size", sample_size), ("in_channels", in_channels), ("model_channels", model_channels),
                            ("num_res_blocks", num_res_blocks), ("num_train_timesteps", num_train_timesteps),
                            ("sample_steps", sample_steps)):
            if value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value}.")
        if not channel_mult or any(m < 1 for m in channel_mult):
            raise ValueError(f"model.channel_mult must be a non-empty list of positive integers, got {channel_mult}.")
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
        self.save_hyperparameters()
        self.unet = make_unet(sample_size, in_channels, model_channels, list(channel_mult), num_res_blocks,
                              list(attention_resolutions), dropout, attention_head_dim)
        self.noise_scheduler = make_scheduler(schedule, num_train_timesteps, prediction_type)

    # -- training ---------------------------------------------------------------------------------
    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The U-Net's prediction (noise or v) for `noisy` images at `timesteps`."""
        return self.unet(noisy, timesteps).sample

    def loss(self, images: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """MSE between the U-Net's prediction and its target for clean `images` in [-1, 1]."""
        noisy = self.noise_scheduler.add_noise(images, noise, timesteps)
        if self.hparams.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(images, noise, timesteps)
        return F.mse_loss(self(noisy, timesteps).float(), target.float())

    def _shared_step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        n, steps = images.shape[0], self.hparams.num_train_timesteps
        if stage == "train":
            timesteps = torch.randint(0, steps, (n,), device=self.device)
            noise = torch.randn_like(images)
        else:  # the same timesteps and noise for the same val batch every epoch
            generator = torch.Generator().manual_seed(VAL_SEED + batch_idx)
            timesteps = torch.randint(0, steps, (n,), generator=generator).to(self.device)
            noise = torch.randn(images.shape, generator=generator).to(images)
        loss = self.loss(images, timesteps, noise)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=n,
                 sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test", batch_idx)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """`batch`: one seed per image to draw (the data module's predict loader); returns images in [0, 1]."""
        seeds = batch[0] if isinstance(batch, (list, tuple)) else batch
        generator = torch.Generator().manual_seed(int(seeds[0]))
        return {"images": self.sample(len(seeds), generator=generator), "seeds": seeds.tolist()}

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(decay_param_groups(self.unet, hp.weight_decay), lr=hp.lr)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        warmup = hp.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not math.isfinite(total) or total <= warmup:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_end(self) -> None:
        """Export the final (EMA, copied in by the EMA callback at train end) weights as a diffusers pipeline."""
        if self.hparams.export_on_fit_end and self.trainer.is_global_zero:
            path = export_pipeline(self, Path(self.trainer.default_root_dir) / "pipeline")
            print(f"Diffusers pipeline exported to {path}")

    # -- sampling ---------------------------------------------------------------------------------
    def inference_scheduler(self, sampler: str):
        """A fresh DDPM or DDIM scheduler with the training schedule (schedulers hold per-run state)."""
        check_choice("sampler", sampler, SAMPLERS)
        cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
        return cls.from_config(self.noise_scheduler.config)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: Optional[int] = None,
        sampler: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
        eta: Optional[float] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> torch.Tensor:
        """Draw `n` images `[n, C, H, W]` in [0, 1] with `steps` DDIM or DDPM steps (defaults: the module's
        `sample_steps` / `sampler` / `eta`). `generator` (a CPU `torch.Generator`) makes the result repeatable;
        `progress(i, total)` is called after each step. Runs in eval mode with the weights currently loaded
        (the EMA weights after training, in validation and from a checkpoint)."""
        hp = self.hparams
        sampler = sampler or hp.sampler
        steps = int(steps or hp.sample_steps)
        eta = hp.eta if eta is None else eta
        if n < 1 or not 1 <= steps <= hp.num_train_timesteps:
            raise ValueError(f"Sampling needs n >= 1 and 1 <= steps <= {hp.num_train_timesteps}, got n={n}, steps={steps}.")
        scheduler = self.inference_scheduler(sampler)
        scheduler.set_timesteps(steps)
        step_kwargs = {"eta": eta} if sampler == "ddim" else {}
        shape = (n, hp.in_channels, hp.sample_size, hp.sample_size)
        x = torch.randn(shape, generator=generator).to(self.device)
        was_training = self.training
        self.eval()
        try:
            for i, t in enumerate(scheduler.timesteps):
                output = self(x, t.to(self.device).expand(n)).float()
                x = scheduler.step(output, t, x, generator=generator, **step_kwargs).prev_sample
                if progress is not None:
                    progress(i + 1, len(scheduler.timesteps))
        finally:
            self.train(was_training)
        return denormalize(x)


# -- diffusers interchange ---------------------------------------------------------------------------
def build_pipeline(module: DDPM) -> DDPMPipeline:
    """A stand-alone diffusers `DDPMPipeline` (a copy of the U-Net on CPU + the training DDPMScheduler)."""
    unet = copy.deepcopy(module.unet).to("cpu").float().eval()
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(module.noise_scheduler.config))


def export_pipeline(module: DDPM, out_dir: str | Path) -> Path:
    """Save `module`'s current weights as a pipeline folder that `DDPMPipeline.from_pretrained(out_dir)` loads."""
    out_dir = Path(out_dir)
    build_pipeline(module).save_pretrained(str(out_dir))
    return out_dir
