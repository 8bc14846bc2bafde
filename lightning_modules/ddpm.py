"""DDPM image generator: a diffusers `UNet2DModel` trained to predict noise.

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,   loss = MSE(unet(x_t, t), eps)

(or the v-target with `prediction_type: v_prediction`). Noise schedules, the
forward process and the reverse steps are diffusers' `DDPMScheduler` /
`DDIMScheduler` (built in lightning_modules/unet.py); nothing of the diffusion
maths is re-implemented here.

Images enter as floats in [-1, 1] `[B, C, H, W]` (the data modules scale them);
`sample()` returns floats in [0, 1]. The same `sample()` serves the sample-grid
callback, the FID callback, `paradis predict` and the Gradio app.

EMA weights: the `EMA` callback (callbacks/ema.py) swaps the averaged weights
into this module for validation, swaps them in when training ends (so the final
grid and the exported pipeline use them) and saves them as the checkpoint's
`state_dict` (the raw weights go to `current_model_state`). So anything that
loads a checkpoint's `state_dict` (`predict`, the app, `apps.export_ddpm`) gets
EMA weights.

Speed settings (TF32, cudnn.benchmark, channels-last, fused AdamW, `torch.compile`, gradient checkpointing)
are not arguments here: they change how fast a machine runs the model, not what it is, so the
`callbacks.cuda_speed.CudaSpeed` callback in the config applies them (it calls `speed_up`) and checkpoints
do not carry them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from diffusers.training_utils import compute_snr

from lightning_modules import gpu
from lightning_modules.common import TaskModule, check_choice, check_positive, check_probability, decay_param_groups
from lightning_modules.unet import (
    SAMPLERS,
    PredictionType,
    Sampler,
    Schedule,
    check_unet_shape,
    export_pipeline,
    make_scheduler,
    make_unet,
)
from paradis.images import denormalize

VAL_SEED = 1234  # fixed timesteps and noise for val/loss, so epochs are comparable


class DDPM(TaskModule):
    """Denoising diffusion model over `in_channels` x `sample_size`^2 images.

    Args:
        sample_size, in_channels: image side (pixels) and channels (3 = RGB, 1 = grey).
        model_channels, channel_mult, num_res_blocks, attention_resolutions, dropout, attention_head_dim:
            the U-Net shape (see `make_unet`); the seed's 128 px model is 192, (1, 2, 3, 4), 2, (16,), 0.1.
        schedule: linear, cosine or quadratic betas over `num_train_timesteps` steps.
        prediction_type: what the U-Net predicts: epsilon (the noise) or v_prediction.
        snr_gamma: Min-SNR-gamma loss weighting of training steps (Hang et al. 2023; diffusers' `compute_snr`),
            e.g. 5.0; None trains on the plain MSE. `val/loss` is always the plain MSE, so runs compare.
        lr, weight_decay: AdamW (no decay on biases / norms); `warmup_steps` of linear warm-up, then cosine
            decay to zero over the run (diffusers' `get_cosine_schedule_with_warmup`; constant after warm-up
            when the run length is unknown).
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
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (8,),
        dropout: float = 0.0,
        attention_head_dim: int = 32,
        schedule: Schedule = "cosine",
        num_train_timesteps: int = 1000,
        prediction_type: PredictionType = "epsilon",
        snr_gamma: float | None = None,
        lr: float = 2e-4,
        warmup_steps: int = 200,
        weight_decay: float = 0.0,
        sample_steps: int = 50,
        sampler: Sampler = "ddim",
        eta: float = 0.0,
        export_on_fit_end: bool = True,
    ) -> None:
        super().__init__()
        check_choice("sampler (model.sampler)", sampler, SAMPLERS)
        check_positive("Learning rate (model.lr)", lr)
        check_positive("Weight decay (model.weight_decay)", weight_decay, allow_zero=True)
        check_positive("Warm-up steps (model.warmup_steps)", warmup_steps, allow_zero=True)
        check_probability("Dropout (model.dropout)", dropout)
        if snr_gamma is not None:
            check_positive("Min-SNR gamma (model.snr_gamma)", snr_gamma)
        for name, value in (
            ("sample_size", sample_size),
            ("in_channels", in_channels),
            ("model_channels", model_channels),
            ("num_res_blocks", num_res_blocks),
            ("num_train_timesteps", num_train_timesteps),
            ("sample_steps", sample_steps),
        ):
            if value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value}.")
        check_unet_shape(sample_size, model_channels, channel_mult, attention_head_dim)
        self.save_hyperparameters()
        self.unet = make_unet(
            sample_size,
            in_channels,
            model_channels,
            tuple(channel_mult),
            num_res_blocks,
            tuple(attention_resolutions),
            dropout,
            attention_head_dim,
        )
        self.noise_scheduler = make_scheduler(schedule, num_train_timesteps, prediction_type)
        # set by `speed_up` (the CudaSpeed callback); plain attributes, so never in state_dict or hyperparameters
        self._channels_last = False
        self._fused_adamw = False
        self._compiled: gpu.Compiled | None = None

    def speed_up(
        self,
        channels_last: bool = False,
        fused_adamw: bool = False,
        compile: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        """Run faster without changing the model; `callbacks.cuda_speed.CudaSpeed` calls this in its `setup` (the
        first two only on CUDA). `channels_last`: NHWC U-Net weights and inputs (what tensor-core convolutions
        want); `fused_adamw`: one AdamW kernel per step, where Lightning allows it (`gpu.fused_allowed`);
        `compile`: `torch.compile` the U-Net (eager, with one line, where it cannot compile);
        `gradient_checkpointing`: recompute U-Net activations in backward (less memory, more time)."""
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self._channels_last = channels_last
        self._fused_adamw = fused_adamw
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if compile and self._compiled is None:
            self._compiled = gpu.Compiled(self.unet)

    # -- training ---------------------------------------------------------------------------------
    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The U-Net's prediction (noise or v) for `noisy` images at `timesteps`."""
        if self._channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        unet = self._compiled if self._compiled is not None else self.unet
        return unet(noisy, timesteps).sample

    def loss(
        self, images: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor, weighted: bool = False
    ) -> torch.Tensor:
        """MSE between the U-Net's prediction and its target for clean `images` in [-1, 1] (`weighted`: with the
        Min-SNR-gamma weights when `snr_gamma` is set)."""
        noisy = self.noise_scheduler.add_noise(images, noise, timesteps)
        epsilon = self.hparams.prediction_type == "epsilon"
        target = noise if epsilon else self.noise_scheduler.get_velocity(images, noise, timesteps)
        prediction = self(noisy, timesteps).float()
        gamma = self.hparams.snr_gamma
        if not weighted or gamma is None:
            return F.mse_loss(prediction, target.float())
        snr = compute_snr(self.noise_scheduler, timesteps)
        # min(SNR, gamma) / SNR for an epsilon target, min(SNR, gamma) / (SNR + 1) for a v target
        weights = snr.clamp(max=gamma) / (snr if epsilon else snr + 1)
        per_image = F.mse_loss(prediction, target.float(), reduction="none").mean(dim=(1, 2, 3))
        return (per_image * weights).mean()

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
        loss = self.loss(images, timesteps, noise, weighted=stage == "train")
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=n,
            sync_dist=stage != "train",
        )
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
        # not with clipping under mixed precision
        fused = self._fused_adamw and gpu.fused_allowed(self.attached_trainer)
        optimizer = gpu.adamw(decay_param_groups(self.unet, hp.weight_decay), hp.lr, self.device, fused=fused)
        total = self.trainer.estimated_stepping_batches if self.attached_trainer is not None else math.inf
        if math.isfinite(total) and total > hp.warmup_steps:
            total = self.budget_sized(int(total), "optimizer steps", "--trainer.max_epochs / --trainer.max_steps")
            scheduler = get_cosine_schedule_with_warmup(optimizer, hp.warmup_steps, total)
        else:  # run length unknown (max_time / max_steps -1): warm up, then hold
            scheduler = get_constant_schedule_with_warmup(optimizer, hp.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_end(self) -> None:
        """Export the final (EMA, swapped in by the EMA callback at train end) weights as a diffusers pipeline."""
        if self.hparams.export_on_fit_end and self.trainer.is_global_zero:
            path = export_pipeline(self, Path(self.trainer.default_root_dir) / "pipeline")
            print(f"Diffusers pipeline exported to {path}")

    # -- sampling ---------------------------------------------------------------------------------
    def inference_scheduler(self, sampler: Sampler):
        """A fresh DDPM or DDIM scheduler with the training schedule (schedulers hold per-run state)."""
        check_choice("sampler", sampler, SAMPLERS)
        cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
        return cls.from_config(self.noise_scheduler.config)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int | None = None,
        sampler: Sampler | None = None,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        progress: Callable[[int, int], None] | None = None,
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
            raise ValueError(
                f"Sampling needs n >= 1 and 1 <= steps <= {hp.num_train_timesteps}, got n={n}, steps={steps}."
            )
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
