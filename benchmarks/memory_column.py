"""The CPU memory column (`perf/peak_memory_mb`, callbacks/speed.py) for a few MNIST variants: 3-batch fits.

    python benchmarks/memory_column.py

Prints a Markdown table (BENCHMARKS.md "Memory column"). Each variant starts from seed 0 on the bundled MNIST.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Trainer, seed_everything  # noqa: E402

from callbacks.speed import EpochStats  # noqa: E402
from datamodules.mnist import MNISTDataModule  # noqa: E402
from lightning_modules.mnist import MNISTClassifier  # noqa: E402

VARIANTS = [
    ("MLP 784-128-10, Adam, batch 64", dict(hidden_sizes=[128]), 64),
    ("MLP 784-512-512-10, Adam, batch 64", dict(hidden_sizes=[512, 512]), 64),
    ("MLP 784-128-10, Adam, batch 512", dict(hidden_sizes=[128]), 512),
    ("MLP 784-128-10, SGD, batch 64", dict(hidden_sizes=[128], optimizer="sgd"), 64),
    ("MLP 784-128-10, Adam, batch 64, dropout 0.2", dict(hidden_sizes=[128], dropout=0.2), 64),
    ("MLP 784-128-10, Adam, batch 64, batch-norm", dict(hidden_sizes=[128], batch_norm=True), 64),
    ("CNN 8-16, head 32, Adam, batch 64", dict(arch="cnn", cnn_channels=[8, 16], hidden_sizes=[32]), 64),
]


def peak_mb(model_args: dict, batch_size: int, root: str) -> float:
    seed_everything(0, verbose=False)
    trainer = Trainer(
        default_root_dir=root,
        logger=False,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[EpochStats()],
    )
    data = MNISTDataModule(download=False, batch_size=batch_size, val_size=500, train_subset=2000)
    trainer.fit(MNISTClassifier(**model_args), data)
    return float(trainer.logged_metrics["perf/peak_memory_mb"])


if __name__ == "__main__":
    print("| variant | perf/peak_memory_mb |\n|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for name, args, batch in VARIANTS:
            print(f"| {name} | {peak_mb(args, batch, root):.2f} |", flush=True)
