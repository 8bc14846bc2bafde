"""One full MNIST training epoch, three ways, on the same model and data (issue: foundation).

    .venv/bin/python benchmarks/mnist_epoch.py [--batch-size 64] [--repeats 3] [--arch mlp]

(a) paradis: `paradis fit --config configs/mnist.yaml` itself (`ParadisCLI`, with `--model.arch`,
    `--data.batch_size`, validation off): everything it adds (run-folder checkpoints, TensorBoard,
    gradient histograms every 200 steps, LR monitor, epoch stats and the memory measurement,
    divergence guard, exact-resume state, the progress bar); two epochs, the second one timed
    (its epoch-end checkpoint and logging included), test accuracy after the first;
(b) plain PyTorch: the same nn.Module, batches sliced from the in-memory uint8 tensor;
(c) naive: torchvision `MNIST` + `ToTensor` + `Normalize` + `DataLoader(shuffle=True)`.

Each way trains one epoch of the 50,000-image training split (validation off: it is
not part of the comparison) from the same initial weights (seed 0); start-up (imports, data loading,
the first epoch's one-time set-up) is measured by benchmarks/startup.py, not here; the best of `--repeats`
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

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything  # noqa: E402

from apps.cli import ParadisCLI  # noqa: E402
from datamodules.mnist_sources import load_bundled  # noqa: E402
from lightning_modules.mnist import MNISTClassifier  # noqa: E402
from paradis.runtime import prepare_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TRAIN_SIZE = 50_000


def make_model(arch: str) -> MNISTClassifier:
    seed_everything(0, verbose=False)
    return MNISTClassifier(arch=arch, hidden_sizes=[128])


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    correct = sum(
        (model(images[i : i + 2000]).argmax(1) == labels[i : i + 2000]).sum().item()
        for i in range(0, len(images), 2000)
    )
    model.train(was_training)
    return correct / len(images)


class EpochClock(Callback):
    """Wall and CPU time of the second epoch (start of epoch 1 to the start of `on_train_end`, so the epoch-end
    checkpoint and logging are in, the end-of-training saves are not); test accuracy after the first epoch."""

    def __init__(self, test_images: torch.Tensor, test_labels: torch.Tensor) -> None:
        self.test = (test_images, test_labels)
        self.accuracy = self.wall = self.cpu = float("nan")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = (time.perf_counter(), time.process_time())

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == 0:
            self.accuracy = test_accuracy(pl_module, *self.test)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.wall, self.cpu = time.perf_counter() - self.start[0], time.process_time() - self.start[1]


class TimedCLI(ParadisCLI):
    """`paradis fit` itself, with the clock as its first callback (first: it reads the time before the others)."""

    clock: Callback | None = None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.insert(0, self.clock)
        return trainer


def fit_with_clock(clock: Callback, run_dir: Path, *overrides: str) -> None:
    """`paradis fit --config configs/mnist.yaml` (seed 0, bundled data, CPU, validation off) with `clock` first."""
    TimedCLI.clock = clock
    TimedCLI(
        args=[
            "fit",
            "--config",
            str(ROOT / "configs" / "mnist.yaml"),
            "--run_dir",
            str(run_dir),
            "--seed_everything",
            "0",
            "--data.download",
            "false",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.accelerator",
            "cpu",
            *overrides,
        ]
    )


def run_paradis(arch: str, batch_size: int, workdir: Path, test: tuple) -> tuple[float, float, float]:
    """Two epochs of `paradis fit --config configs/mnist.yaml` (validation off); the second one is timed."""
    clock = EpochClock(*test)
    fit_with_clock(
        clock,
        workdir,
        "--model.arch",
        arch,
        "--data.batch_size",
        str(batch_size),
        "--data.val_size",
        str(60_000 - TRAIN_SIZE),
        "--trainer.max_epochs",
        "2",
    )
    return clock.wall, clock.cpu, clock.accuracy


def run_plain(
    arch: str, batch_size: int, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float, MNISTClassifier]:
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


def run_naive(
    arch: str, batch_size: int, images: torch.Tensor, labels: torch.Tensor, workdir: Path
) -> tuple[float, float, MNISTClassifier]:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import MNIST

    raw = workdir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", labels),
        ("t10k-images-idx3-ubyte", images[:10]),
        ("t10k-labels-idx1-ubyte", labels[:10]),
    ):
        array = array.numpy().astype(np.uint8)
        header = np.array([0x803 if array.ndim == 3 else 0x801, *array.shape], dtype=">i4").tobytes()
        (raw / name).write_bytes(header + array.tobytes())
    dataset = MNIST(
        str(workdir),
        train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]),
    )
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
    # What `paradis` does at start-up (quiet libraries, gc.freeze, no NVML probe per Adam step without a GPU:
    # a plain PyTorch script never has Lightning's NVML setting at all).
    prepare_process(console=True)

    all_images, all_labels, test_images, test_labels = load_bundled()
    generator = torch.Generator().manual_seed(42)
    order = torch.randperm(len(all_images), generator=generator)[:TRAIN_SIZE]
    images, labels = all_images[order].contiguous(), all_labels[order].contiguous()

    results: dict[str, list[float]] = {"paradis": [], "plain": [], "naive": []}
    cpu_results: dict[str, list[float]] = {"paradis": [], "plain": [], "naive": []}
    accuracy: dict[str, float] = {}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, cpu, accuracy["paradis"] = run_paradis(
                args.arch, args.batch_size, Path(tmp) / "run", (test_images, test_labels)
            )
        results["paradis"].append(seconds)
        cpu_results["paradis"].append(cpu)
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
    print(
        f"\nOne MNIST epoch ({TRAIN_SIZE} images, batch {args.batch_size}, {args.arch}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}); best of {args.repeats}:"
    )
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print("| loop | epoch wall time | steps/s | vs plain | epoch CPU time | vs plain (CPU) | test acc after 1 epoch |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds in best.items():
        cpu = best_cpu[name]
        print(
            f"| {name} | {seconds:.2f} s | {steps / seconds:.0f} | {seconds / best['plain']:.2f}x | {cpu:.2f} s | "
            f"{cpu / best_cpu['plain']:.2f}x | {accuracy[name]:.4f} |"
        )
    print(
        json.dumps(
            {
                "best_seconds": best,
                "best_cpu_seconds": best_cpu,
                "accuracy": accuracy,
                "batch_size": args.batch_size,
                "arch": args.arch,
            }
        )
    )


if __name__ == "__main__":
    main()
