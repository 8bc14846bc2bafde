"""DDPM speed on CPU: training images/s (Lightning module vs a plain PyTorch + diffusers loop on the same
U-Net and data) and sampling wall time (DDIM vs DDPM).

    python benchmarks/ddpm.py train --unet tiny --steps 30 --batch-size 64
    python benchmarks/ddpm.py train --unet seed --steps 8 --batch-size 8       # the seed's U-Net at 32 px
    python benchmarks/ddpm.py sample --n 16 --ddim-steps 50 --ddpm-steps 1000
    python benchmarks/ddpm.py plot runs/ddpm_silhouettes docs/ddpm/loss.png    # loss curves from TensorBoard
    python benchmarks/ddpm.py ema --unet cats32 --batch-size 64                # EMA update vs training step

Both training loops do the same work per step: uint8 batch -> [-1, 1] + random flip, random timesteps and
noise, add_noise, U-Net forward, MSE, backward, AdamW step, LR-scheduler step. The first `--warmup` steps
are not timed. Runs alternate (Lightning, plain, plain, Lightning, ...) and the best of `--repeats` is
reported, as images per wall second and per CPU second of the process (with OMP_NUM_THREADS=1 the
CPU figure is steady even when other jobs share the machine). `--ema` adds the EMA callback to the Lightning run (and
an `AveragedModel` update to the plain loop).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Callback, Trainer  # noqa: E402

from callbacks.ema import EMA  # noqa: E402
from datamodules.image_folder import load_folder  # noqa: E402
from datamodules.images import SilhouetteDataModule  # noqa: E402
from datamodules.tensor_batches import TensorBatches  # noqa: E402
from lightning_modules.ddpm import DDPM  # noqa: E402
from paradis.images import normalize  # noqa: E402

UNETS = {
    # tests/configs/ddpm_tiny.yaml
    "tiny": dict(
        model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[16], attention_head_dim=16
    ),
    # configs/ddpm_silhouettes.yaml
    "silhouettes": dict(
        model_channels=32, channel_mult=[1, 2, 2], num_res_blocks=1, attention_resolutions=[8], attention_head_dim=32
    ),
    # configs/ddpm_cats32_cpu.yaml (photos at 32 px on CPU)
    "cats32": dict(
        model_channels=32, channel_mult=[1, 2, 3, 4], num_res_blocks=1, attention_resolutions=[8], attention_head_dim=32
    ),
    # issue 11's calibration net: 64 ch x [1, 2, 2] (4.4M), ~25 images/s, colour blobs after 10 min
    "calib64": dict(
        model_channels=64, channel_mult=[1, 2, 2], num_res_blocks=1, attention_resolutions=[8], attention_head_dim=64
    ),
    # configs/ddpm_cats.yaml (the seed's), here at 32 px: attention at 16x16 is the second level
    "seed": dict(
        model_channels=192,
        channel_mult=[1, 2, 3, 4],
        num_res_blocks=2,
        attention_resolutions=[16],
        attention_head_dim=64,
        dropout=0.1,
    ),
}
CATS128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats128"


def images_for(unet: str) -> torch.Tensor:
    """uint8 [N, C, 32, 32]: the silhouettes (1 channel) for the small U-Nets, the cat photos (RGB) for the seed's."""
    if unet == "seed" and CATS128.is_dir():
        return load_folder(CATS128, size=32, channels=3)[0]
    images = SilhouetteDataModule().load()
    return images.expand(-1, 3, -1, -1).contiguous() if unet == "seed" else images


def make_module(unet: str, channels: int) -> DDPM:
    torch.manual_seed(0)
    return DDPM(sample_size=32, in_channels=channels, warmup_steps=10, export_on_fit_end=False, **UNETS[unet])


def clocks() -> tuple[float, float]:
    """(wall clock, this process's CPU time): on a shared machine the CPU time is the steadier measure."""
    return time.perf_counter(), time.process_time()


def rates(images: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """(images per wall second, images per CPU second)."""
    return images / (end[0] - start[0]), images / (end[1] - start[1])


class StepTimer(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, (0.0, 0.0), (0.0, 0.0), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = clocks()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.warmup:
            self.images += len(batch)
            self.end = clocks()


class Batches:
    """The data module's loader without the data module: TensorBatches over the images."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.loader = TensorBatches((images,), batch_size=batch_size, shuffle=True, drop_last=True, seed=0)


def lightning_run(unet: str, images: torch.Tensor, batch_size: int, steps: int, warmup: int, ema: bool) -> float:
    module = make_module(unet, images.shape[1])
    data = SilhouetteDataModule(batch_size=batch_size)
    data.load = lambda: images  # same tensor as the plain loop
    data.val_fraction = 0.01
    timer = StepTimer(warmup)
    callbacks = [timer] + ([EMA(decay=0.999)] if ema else [])
    trainer = Trainer(
        accelerator="cpu",
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(module, data)
    return rates(timer.images, timer.start, timer.end)


def plain_run(unet: str, images: torch.Tensor, batch_size: int, steps: int, warmup: int, ema: bool) -> float:
    """A hand-written loop on the same diffusers U-Net and scheduler."""
    module = make_module(unet, images.shape[1])
    model, scheduler = module.unet.train(), module.noise_scheduler
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    average = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=None, avg_fn=torch.optim.swa_utils.get_ema_avg_fn(0.999)
        )
        if ema
        else None
    )
    train = images[: len(images) - max(1, round(len(images) * 0.01))]
    done, start, count = 0, (0.0, 0.0), 0
    while done < warmup + steps:
        for (batch,) in Batches(train, batch_size).loader:
            if done == warmup:
                start = clocks()
            x = normalize(batch)
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x),))
            noise = torch.randn_like(x)
            loss = F.mse_loss(model(scheduler.add_noise(x, noise, t), t).sample, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            if average is not None:
                average.update_parameters(model)
            done += 1
            if done > warmup:
                count += len(batch)
            if done == warmup + steps:
                break
    return rates(count, start, clocks())


def bench_train(args) -> None:
    images = images_for(args.unet)
    params = sum(p.numel() for p in make_module(args.unet, images.shape[1]).unet.parameters())
    print(
        f"U-Net '{args.unet}': {params / 1e6:.2f}M parameters, images {tuple(images.shape)}, batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup}, torch threads {torch.get_num_threads()}"
    )
    results = {"lightning": [], "plain": []}
    runs = {"lightning": lightning_run, "plain": plain_run}
    for r in range(args.repeats):
        for name in ("lightning", "plain") if r % 2 == 0 else ("plain", "lightning"):  # ABBA: cancels drift
            results[name].append(runs[name](args.unet, images, args.batch_size, args.steps, args.warmup, args.ema))
            wall, cpu = results[name][-1]
            print(f"  repeat {r + 1} {name:9s}: {wall:.3g} img/s wall, {cpu:.3g} img/CPU-s")
    (wall_l, cpu_l), (wall_p, cpu_p) = (tuple(max(v) for v in zip(*results[k])) for k in ("lightning", "plain"))
    print(
        f"RESULT train unet={args.unet} ema={args.ema} batch={args.batch_size}: best of {args.repeats}: "
        f"lightning {wall_l:.3g} img/s ({cpu_l:.3g} img/CPU-s), plain {wall_p:.3g} img/s ({cpu_p:.3g} img/CPU-s), "
        f"ratio wall {wall_l / wall_p:.3f}, CPU {cpu_l / cpu_p:.3f}"
    )


def bench_sample(args) -> None:
    module = make_module(args.unet, 1 if args.unet != "seed" else 3).eval()
    times = {}
    for sampler, steps in (("ddim", args.ddim_steps), ("ddpm", args.ddpm_steps)):
        start = time.perf_counter()
        images = module.sample(args.n, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(0))
        times[sampler] = time.perf_counter() - start
        assert images.shape[0] == args.n
        print(
            f"  {sampler} {steps} steps, {args.n} images: {times[sampler]:.1f} s ({times[sampler] / steps * 1000:.0f} ms/step)"
        )
    ddpm_full = times["ddpm"] * 1000 / args.ddpm_steps
    note = "" if args.ddpm_steps == 1000 else f" (DDPM 1000 extrapolated from {args.ddpm_steps} steps)"
    print(
        f"RESULT sample unet={args.unet} n={args.n}: DDIM {args.ddim_steps} {times['ddim']:.1f} s, "
        f"DDPM 1000 {ddpm_full:.1f} s, speed-up {ddpm_full / times['ddim']:.1f}x{note}"
    )


def plot_losses(args) -> None:
    """train/loss (per step and per epoch) and val/loss from a run folder's TensorBoard events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(args.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    fig, ax = plt.subplots(figsize=(7, 4))
    for tag, style in (
        ("train/loss_step", dict(alpha=0.35, lw=1)),
        ("train/loss_epoch", dict(marker="o")),
        ("val/loss", dict(marker="s")),
    ):
        if tag in events.Tags()["scalars"]:
            points = events.Scalars(tag)
            ax.plot([p.step for p in points], [p.value for p in points], label=tag, **style)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MSE (noise prediction)")
    ax.set_yscale("log")
    ax.set_title(f"DDPM {Path(args.run_dir).name}: val/loss uses the EMA weights")
    ax.grid(alpha=0.3)
    ax.legend()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"RESULT plot written to {args.out}")


def bench_ema(args) -> None:
    """One EMA update (Lightning's EMAWeightAveraging: `AveragedModel` + `get_ema_multi_avg_fn`, foreach lerp)
    against one training step of the same U-Net (forward, backward, AdamW), best of `--repeats` x 5."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    module = make_module(args.unet, 3)
    x = torch.rand(args.batch_size, 3, 32, 32) * 2 - 1
    t = torch.randint(0, 1000, (args.batch_size,))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)

    def step() -> None:
        loss = module.loss(x, t, torch.randn_like(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(args.repeats * 5):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    step_s, ema_s = best(step), best(lambda: ema.update_parameters(module))
    params = sum(p.numel() for p in module.parameters()) / 1e6
    print(
        f"RESULT ema unet={args.unet} ({params:.1f}M params) batch={args.batch_size}: step {step_s * 1000:.1f} ms, "
        f"EMA update {ema_s * 1000:.2f} ms ({100 * ema_s / step_s:.1f} % of a step), CPU time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    train = sub.add_parser("train")
    train.add_argument("--unet", choices=UNETS, default="tiny")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--steps", type=int, default=30)
    train.add_argument("--warmup", type=int, default=3)
    train.add_argument("--repeats", type=int, default=2)
    train.add_argument("--ema", action="store_true")
    sample = sub.add_parser("sample")
    sample.add_argument("--unet", choices=UNETS, default="silhouettes")
    sample.add_argument("--n", type=int, default=16)
    sample.add_argument("--ddim-steps", type=int, default=50)
    sample.add_argument("--ddpm-steps", type=int, default=1000)
    ema = sub.add_parser("ema")
    ema.add_argument("--unet", choices=UNETS, default="cats32")
    ema.add_argument("--batch-size", type=int, default=64)
    ema.add_argument("--repeats", type=int, default=3)
    plot = sub.add_parser("plot")
    plot.add_argument("run_dir")
    plot.add_argument("out")
    args = parser.parse_args()
    {"train": bench_train, "sample": bench_sample, "ema": bench_ema, "plot": plot_losses}[args.what](args)


if __name__ == "__main__":
    main()
