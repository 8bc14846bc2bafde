"""One full MNIST training epoch, three ways, on the same model and data (issue: foundation).

    .venv/bin/python benchmarks/mnist_epoch.py [--batch-size 64] [--repeats 3] [--arch mlp]

(a) paradis: the Lightning Trainer with MNISTClassifier + MNISTDataModule, configured as
    `paradis fit --config configs/mnist.yaml` configures it (checkpointing, TensorBoard
    logging, epoch stats, gradient histograms every 200 steps, LR monitor, tqdm progress bar,
    no NVML probe per Adam step: `paradis.runtime`);
(b) plain PyTorch: the same nn.Module, batches sliced from the in-memory uint8 tensor;
(c) naive: torchvision `MNIST` + `ToTensor` + `Normalize` + `DataLoader(shuffle=True)`.

Each way trains one epoch of the 50,000-image training split (validation off: it is
not part of the comparison) from the same initial weights; the best of `--repeats`
wall times is reported, with the test accuracy reached after that one epoch, and the best of the CPU times
(`time.process_time`, all threads of the process): on a machine shared with other jobs the wall clock
swings by 2x between repeats, the CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Trainer, seed_everything  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from callbacks.histograms import GradientHistograms  # noqa: E402
from callbacks.speed import EpochStats  # noqa: E402
from datamodules.mnist import MNISTDataModule, load_bundled  # noqa: E402
from lightning_modules.mnist import MNISTClassifier  # noqa: E402
from paradis.runtime import skip_nvml_probe_without_gpu  # noqa: E402

TRAIN_SIZE = 50_000


def make_model(arch: str) -> MNISTClassifier:
    seed_everything(0, verbose=False)
    return MNISTClassifier(arch=arch, hidden_sizes=[128])


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(images[i : i + 2000]).argmax(1) == labels[i : i + 2000]).sum().item() for i in range(0, len(images), 2000))
    return correct / len(images)


def run_lightning(arch: str, batch_size: int, workdir: Path) -> tuple[float, float, MNISTClassifier]:
    model = make_model(arch)
    data = MNISTDataModule(download=False, batch_size=batch_size, val_size=60_000 - TRAIN_SIZE)
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=workdir,
        logger=TensorBoardLogger(workdir, name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=workdir / "checkpoints", save_last=True), EpochStats(), GradientHistograms(200),
                   LearningRateMonitor(logging_interval="epoch"), TQDMProgressBar()],  # as configs/mnist.yaml
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    data.setup("fit")  # load the data before the clock starts, as (b) does
    start, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start, time.process_time() - cpu, model


def run_plain(arch: str, batch_size: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, MNISTClassifier]:
    model = make_model(arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    order = torch.randperm(len(images))
    for i in range(len(images) // batch_size):
        index = order[i * batch_size : (i + 1) * batch_size]
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, time.process_time() - cpu, model


def run_naive(arch: str, batch_size: int, images: torch.Tensor, labels: torch.Tensor, workdir: Path) -> tuple[float, float, MNISTClassifier]:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import MNIST

    raw = workdir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels),
                        ("t10k-images-idx3-ubyte", images[:10]), ("t10k-labels-idx1-ubyte", labels[:10])):
        array = array.numpy().astype(np.uint8)
        header = np.array([0x803 if array.ndim == 3 else 0x801, *array.shape], dtype=">i4").tobytes()
        (raw / name).write_bytes(header + array.tobytes())
    dataset = MNIST(str(workdir), train=True, transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    model = make_model(arch)
    net = model.net  # the normalisation is done by the transform here
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in loader:
        if arch == "mlp":
            x = x.flatten(1)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, time.process_time() - cpu, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    # What `paradis` does at start-up; a plain PyTorch script never has Lightning's NVML setting at all.
    skip_nvml_probe_without_gpu()

    all_images, all_labels, test_images, test_labels = load_bundled()
    generator = torch.Generator().manual_seed(42)
    order = torch.randperm(len(all_images), generator=generator)[:TRAIN_SIZE]
    images, labels = all_images[order].contiguous(), all_labels[order].contiguous()

    results: dict[str, list[float]] = {"paradis": [], "plain": [], "naive": []}
    cpu_results: dict[str, list[float]] = {"paradis": [], "plain": [], "naive": []}
    accuracy: dict[str, float] = {}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, cpu, model = run_lightning(args.arch, args.batch_size, Path(tmp) / "lightning")
        results["paradis"].append(seconds)
        cpu_results["paradis"].append(cpu)
        accuracy["paradis"] = test_accuracy(model, test_images, test_labels)
        seconds, cpu, model = run_plain(args.arch, args.batch_size, images, labels)
        results["plain"].append(seconds)
        cpu_results["plain"].append(cpu)
        accuracy["plain"] = test_accuracy(model, test_images, test_labels)
        if not args.skip_naive and repeat == 0:  # slow: one run is enough
            with tempfile.TemporaryDirectory() as tmp:
                seconds, cpu, model = run_naive(args.arch, args.batch_size, images, labels, Path(tmp))
            results["naive"].append(seconds)
            cpu_results["naive"].append(cpu)
            accuracy["naive"] = test_accuracy(model, test_images, test_labels)
        print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items() if v), flush=True)

    best = {k: min(v) for k, v in results.items() if v}
    best_cpu = {k: min(v) for k, v in cpu_results.items() if v}
    steps = TRAIN_SIZE // args.batch_size
    print(f"\nOne MNIST epoch ({TRAIN_SIZE} images, batch {args.batch_size}, {args.arch}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}); best of {args.repeats}:")
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print("| loop | epoch wall time | steps/s | vs plain | epoch CPU time | vs plain (CPU) | test acc after 1 epoch |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds in best.items():
        cpu = best_cpu[name]
        print(f"| {name} | {seconds:.2f} s | {steps / seconds:.0f} | {seconds / best['plain']:.2f}x | {cpu:.2f} s | "
              f"{cpu / best_cpu['plain']:.2f}x | {accuracy[name]:.4f} |")
    print(json.dumps({"best_seconds": best, "best_cpu_seconds": best_cpu, "accuracy": accuracy,
                      "batch_size": args.batch_size, "arch": args.arch}))


if __name__ == "__main__":
    main()
