"""The 64 px parts of the GPU check (benchmarks/gpu_check.py): the real `paradis fit` of configs/ddpm_cats64.yaml
against a bare diffusers loop, the 16-mixed divergence guard, and the timed photo run with its EMA samples.

  ddpm64   images/s of `paradis fit --config configs/ddpm_cats64.yaml` itself (every callback of the config and
           of the run folder, EMA updated from the first step) against the diffusers `train_unconditional.py`
           loop on the same U-Net, photos, precision, crop + flip, v-target, clipping, fused AdamW and EMA;
           and Paradis without its divergence guard (the guard's one device-to-host sync a step).
  guard16  16-mixed with a GradScaler whose first scale (2^40) overflows: steps are skipped, the run goes on;
           then a NaN loss at step 3: the run stops with the guard's sentence and finite weights.
  train64  `paradis fit --config configs/ddpm_catfaces64.yaml` (the cat faces of the photos, issue 33) on
           `--photos` for the rest of the budget (last.ckpt refreshed every 2 minutes, so a cut-off leaves a
           checkpoint), then `--samples` EMA samples as uint8 `[N, 64, 64, 3]` arrays of 1,000
           (`cats64_samples_<i>.npy`, to score against the face crops), the last grid, the loss curve and the
           crops' contact sheet (`cats64_faces.png`).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import LightningModule, Trainer, seed_everything

from apps.cli import ParadisCLI
from benchmarks.clock import Clock, sync
from paradis.safety.divergence import DivergenceGuard

ROOT = Path(__file__).resolve().parents[1]


def precision_for(ctx: dict) -> str:
    if ctx["device"] != "cuda":
        return "32"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def cats64_config(ctx: dict, ema_from_step: int | None = None, name: str = "ddpm_cats64.yaml") -> dict:
    """configs/`name` (ddpm_cats64.yaml, or the faces' ddpm_catfaces64.yaml; at toy sizes in a dry run), as a dict."""
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    for callback in config["trainer"]["callbacks"]:
        if ema_from_step is not None and callback["class_path"].endswith("EMA"):
            callback["init_args"]["update_starting_at_step"] = ema_from_step
        if ctx["dry"] and callback["class_path"].endswith("SampleGrid"):
            callback["init_args"].update(n=4, steps=2)
    if ctx["dry"]:  # a 16 px, 16-channel U-Net on CPU
        config["trainer"].update(accelerator="cpu")
        config["model"]["init_args"].update(
            sample_size=16,
            model_channels=16,
            channel_mult=[1, 2],
            attention_resolutions=[8],
            attention_head_dim=16,
            sample_steps=2,
        )
        config["data"]["init_args"].update(image_size=16, load_size=18, batch_size=4, eval_batch_size=4)
    return config


class ClockedCLI(ParadisCLI):
    """`paradis fit` itself, with extra callbacks first (`extra`), and optionally without the divergence guard."""

    extra: list = []
    without_guard = False

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if self.without_guard:
            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, DivergenceGuard)]
        trainer.callbacks[:0] = self.extra
        return trainer


def paradis_fit(
    ctx: dict, config: dict, run_dir: Path, *overrides: str, extra: list = (), without_guard=False
) -> ClockedCLI:
    path = ctx["tmp"] / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    photos = ctx["photos"] or ctx["noise_photos"]
    ClockedCLI.extra, ClockedCLI.without_guard = list(extra), without_guard
    try:
        return ClockedCLI(
            args=[
                "fit",
                "--config",
                str(path),
                "--data.data_dir",
                str(photos),
                "--run_dir",
                str(run_dir),
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.precision",
                precision_for(ctx),
                *overrides,
            ]
        )
    finally:
        ClockedCLI.extra, ClockedCLI.without_guard = [], False


# -- ddpm64 ------------------------------------------------------------------------------------------
def section_ddpm64(ctx: dict) -> dict:
    warmup, steps = (1, 2) if ctx["dry"] else (10, 30)  # 40 steps < one epoch of ~2,670 photos at batch 64
    config = cats64_config(ctx, ema_from_step=0)
    batch = config["data"]["init_args"]["batch_size"]
    results = {
        "precision": precision_for(ctx),
        "batch_size": batch,
        "photos": "cat photos" if ctx["photos"] else "noise",
        "timed_steps": steps,
    }
    for name, without_guard in (("paradis fit", False), ("paradis fit without the divergence guard", True)):
        clock = Clock(warmup, ctx["device"], stop=warmup + steps)
        paradis_fit(
            ctx,
            config,
            ctx["tmp"] / f"ddpm64-{int(without_guard)}",
            "--trainer.max_steps",
            str(warmup + steps),
            "--trainer.limit_val_batches",
            "0",
            "--trainer.num_sanity_val_steps",
            "0",
            "--model.export_on_fit_end",
            "false",
            extra=[clock],
            without_guard=without_guard,
        )
        results[f"{name} images/s"] = round(clock.rate, 1)
        ctx["progress"](results)
    results["bare diffusers loop images/s"] = round(bare64(ctx, config, warmup, steps), 1)
    results["paradis / bare"] = round(results["paradis fit images/s"] / results["bare diffusers loop images/s"], 3)
    return results


def bare64(ctx: dict, config: dict, warmup: int, steps: int) -> float:
    """diffusers' train_unconditional.py loop: the same U-Net, photos (uint8 on the GPU, random crop + flip),
    v-target, precision, clipping, fused AdamW and EMA update every step."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from datamodules.image_folder import load_folder
    from datamodules.images import crop
    from lightning_modules.unet import make_scheduler, make_unet

    device, hp, data = ctx["device"], config["model"]["init_args"], config["data"]["init_args"]
    ema_decay = next(c["init_args"]["decay"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("EMA"))
    torch.manual_seed(0)
    unet = make_unet(
        hp["sample_size"],
        hp["in_channels"],
        hp["model_channels"],
        hp["channel_mult"],
        hp["num_res_blocks"],
        hp["attention_resolutions"],
        hp["dropout"],
        hp["attention_head_dim"],
    ).to(device)
    if device == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    ema = AveragedModel(unet, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    scheduler = make_scheduler(hp["schedule"], hp["num_train_timesteps"], hp["prediction_type"])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=hp["lr"], fused=device == "cuda")
    precision = precision_for(ctx)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "16-mixed")
    images = load_folder(ctx["photos"] or ctx["noise_photos"], data["load_size"], 3)[0].to(device)
    batch, size = data["batch_size"], data["image_size"]
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        x = crop(images[torch.randint(0, len(images), (batch,), device=device)], size, random=True).float() / 127.5 - 1
        x = torch.where(torch.rand(batch, 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        noise, t = torch.randn_like(x), torch.randint(0, hp["num_train_timesteps"], (batch,), device=device)
        target = noise if hp["prediction_type"] == "epsilon" else scheduler.get_velocity(x, noise, t)
        noisy = scheduler.add_noise(x, noise, t).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = unet(noisy, t).sample
        loss = F.mse_loss(out.float(), target.float())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        ema.update_parameters(unet)
    sync(device)
    return steps * batch / (time.perf_counter() - start)


# -- guard16 -----------------------------------------------------------------------------------------
def section_guard16(ctx: dict) -> dict:
    """The divergence guard under 16-mixed on the real device: GradScaler overflows skipped, a NaN loss stopped."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from datamodules.mnist import MNISTDataModule
    from lightning_modules.mnist import MNISTClassifier
    from paradis.safety.divergence import Diverged

    device = ctx["device"]

    class NaNAtStep3(MNISTClassifier):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.trainer.global_step >= 3 else loss

    def fit(model: LightningModule, scaler: torch.amp.GradScaler) -> Trainer:
        trainer = Trainer(
            plugins=[MixedPrecision("16-mixed", device, scaler=scaler)],
            accelerator=device,
            devices=1,
            max_steps=8,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[DivergenceGuard()],
        )
        trainer.fit(model, MNISTDataModule(download=False, batch_size=64, train_subset=1024, val_size=1000))
        return trainer

    seed_everything(0, verbose=False)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**40)
    model = MNISTClassifier()
    trainer = fit(model, scaler)
    results = {
        "overflow: steps run": trainer.global_step,
        "overflow: final scale": scaler.get_scale(),
        "overflow: weights finite": all(bool(torch.isfinite(p).all()) for p in model.parameters()),
    }
    results["overflow ok"] = (
        results["overflow: steps run"] == 8
        and results["overflow: final scale"] < 2.0**40
        and results["overflow: weights finite"]
    )
    model = NaNAtStep3()
    try:
        fit(model, torch.amp.GradScaler(device))
        results["nan: stopped"] = False
    except Diverged as error:
        results["nan: stopped"], results["nan: message"] = True, str(error)
    results["nan: weights finite"] = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    results["nan ok"] = results["nan: stopped"] and results["nan: weights finite"]
    return results


# -- train64 -----------------------------------------------------------------------------------------
def section_train64(ctx: dict) -> dict:
    from benchmarks.ddpm import plot_losses

    if ctx["photos"] is None:
        return {"skipped": "no --photos folder given"}
    out, run = ctx["out"], ctx["tmp"] / "cats64"
    sample_reserve = 20 + 25 * ctx["samples"] / 1000  # seconds kept for the EMA samples after the run
    seconds = int(max(30, ctx["deadline"] - time.perf_counter() - sample_reserve))
    if ctx["dry"]:
        seconds = 30
    config = cats64_config(ctx, name="ddpm_catfaces64.yaml")
    overrides = [
        "--data.cache_dir",
        str(ctx["tmp"] / "face_cache"),
        "--trainer.max_time",
        f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
        "--checkpoint.every_n_minutes",
        "2",
        "--model.export_on_fit_end",
        "false",
        "--trainer.check_val_every_n_epoch",
        "25",
    ]  # a validation writes ~1.2 GB of best + last
    if ctx["dry"]:
        overrides += ["--trainer.max_steps", "2"]
    if run.exists():
        shutil.rmtree(run)
    if ctx["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    ctx["progress"]({"train_seconds_asked": seconds, "run": "started"})
    try:
        cli = paradis_fit(ctx, config, run, *overrides)
    except SystemExit as exit_:
        if exit_.code:
            return {"error": f"paradis fit exited with {exit_.code} (its message is above)"}
    trainer = cli.trainer
    results = {
        "train_seconds_asked": seconds,
        "wall_s": round(time.perf_counter() - start, 1),
        "precision": precision_for(ctx),
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "images_seen": trainer.global_step * config["data"]["init_args"]["batch_size"],
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if ctx["device"] == "cuda" else None,
        "last_ckpt": (run / "checkpoints" / "last.ckpt").is_file(),
    }
    grids = sorted((run / "samples").glob("*.png"))
    if grids:
        shutil.copy(grids[-1], out / "cats64_samples.png")
    results["grids"] = [g.name for g in grids]
    if (run / "cat_faces.png").is_file():
        shutil.copy(run / "cat_faces.png", out / "cats64_faces.png")
    for events in run.glob("events.out.tfevents.*"):
        shutil.copy(events, out / "cats64_events.tfevents")
    plot_losses(argparse.Namespace(run_dir=str(run), out=str(out / "cats64_loss.png")))
    results.update(ema_samples(ctx, cli.model, out), ema_averaged=has_ema(trainer))
    return results


@torch.no_grad()
def ema_samples(ctx: dict, module, out: Path) -> dict:
    """`ctx["samples"]` images from the module as trained (EMA weights swapped in at the end of fit), 50 DDIM
    steps, seeds 0.., in files of 1,000 uint8 `[N, H, W, 3]` (16 MiB per returned file)."""
    n, per_file, chunk = ctx["samples"], 1000, 8 if ctx["dry"] else 500
    if ctx["dry"]:
        n, per_file = 12, 8
    device = torch.device(ctx["device"])
    module = module.to(device).eval()
    bf16 = ctx["device"] == "cuda" and torch.cuda.is_bf16_supported()
    start, done, files = time.perf_counter(), [], []
    for first in range(0, n, chunk):
        if not ctx["dry"] and time.perf_counter() > ctx["deadline"] and sum(map(len, done)) >= 1000:
            break  # out of time: keep the first 1,000
        generator = torch.Generator().manual_seed(first)
        with torch.autocast(ctx["device"], dtype=torch.bfloat16, enabled=bf16):
            images = module.sample(
                min(chunk, n - first), steps=2 if ctx["dry"] else 50, sampler="ddim", generator=generator
            )
        done.append((images.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    samples = np.concatenate(done)
    for i, first in enumerate(range(0, len(samples), per_file)):
        np.save(out / f"cats64_samples_{i}.npy", samples[first : first + per_file])
        files.append(f"cats64_samples_{i}.npy")
    return {
        "ema_samples": len(samples),
        "sample_files": files,
        "sampling_s": round(time.perf_counter() - start, 1),
        "sampling": f"DDIM 50 steps, eta 0, a seed per chunk of {chunk}, {'bf16 autocast' if bf16 else 'fp32'}",
    }


def has_ema(trainer: Trainer) -> bool:
    """True when the EMA callback had averaged steps, so the module now holds the EMA weights."""
    from callbacks.ema import EMA, has_average

    return any(isinstance(c, EMA) and has_average(c) for c in trainer.callbacks)
