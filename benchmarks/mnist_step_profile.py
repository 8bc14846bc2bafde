"""Where a Lightning training step's time goes: steady-state CPU ms per step, 784-128-10 MLP, batch 64.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mnist_step_profile.py plain bare paradis [--steps 700]
    .venv/bin/python benchmarks/mnist_step_profile.py paradis --profile runs/steady.prof   # cProfile of the steady state

plain:   the PyTorch loop of benchmarks/mnist_epoch.py (b);
bare:    Lightning Trainer with no logger, no checkpointing, no callbacks;
paradis: `paradis fit --config configs/mnist.yaml` itself (benchmarks/mnist_epoch.py's `fit_with_clock`), validation off.
Steps 0-199 are warm-up and not timed (the epoch must hold --steps batches: 781 at batch 64).
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Callback, Trainer, seed_everything  # noqa: E402

from benchmarks.mnist_epoch import fit_with_clock  # noqa: E402
from datamodules.mnist import MNISTDataModule  # noqa: E402
from lightning_modules.mnist import MNISTClassifier  # noqa: E402
from paradis.runtime import prepare_process  # noqa: E402

WARMUP = 200


class SteadyClock(Callback):
    """CPU seconds from batch WARMUP to batch `last`, optionally under cProfile."""

    def __init__(self, last: int, profile: str | None) -> None:
        self.last, self.profile, self.seconds = last, profile, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == WARMUP:
            self.profiler = cProfile.Profile() if self.profile else None
            if self.profiler:
                self.profiler.enable()
            self.start = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.last:
            self.seconds = time.process_time() - self.start
            if self.profiler:
                self.profiler.disable()
                self.profiler.dump_stats(self.profile)


def data() -> MNISTDataModule:
    datamodule = MNISTDataModule(download=False, batch_size=64, val_size=10_000)
    datamodule.setup("fit")
    return datamodule


def run_plain(steps: int) -> float:
    seed_everything(0, verbose=False)
    model, (images, labels) = MNISTClassifier(), data().train
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(images))
    for i in range(steps):
        if i == WARMUP:
            start = time.process_time()
        index = order[i * 64 : (i + 1) * 64]
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.process_time() - start


def run_lightning(steps: int, profile: str | None) -> float:
    """Lightning's Trainer alone: no logger, no checkpointing, no callbacks but the clock."""
    seed_everything(0, verbose=False)
    clock = SteadyClock(steps - 1, profile)
    trainer = Trainer(
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=False,
        accelerator="cpu",
        log_every_n_steps=50,
        logger=False,
        enable_checkpointing=False,
        callbacks=[clock],
    )
    trainer.fit(MNISTClassifier(), data())
    return clock.seconds


def run_paradis(steps: int, profile: str | None) -> float:
    """`paradis fit --config configs/mnist.yaml` itself, stopped after `steps` steps (validation off)."""
    clock = SteadyClock(steps - 1, profile)
    with tempfile.TemporaryDirectory() as tmp:
        fit_with_clock(clock, Path(tmp), "--data.val_size", "10000", "--trainer.max_steps", str(steps))
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loops", nargs="+", choices=["plain", "bare", "paradis"])
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--profile", help="write a cProfile of the steady state of the Lightning loops here")
    args = parser.parse_args()
    prepare_process(console=True)  # what `paradis` does at start-up (see benchmarks/mnist_epoch.py)
    for loop in args.loops:
        run = {
            "plain": lambda: run_plain(args.steps),
            "bare": lambda: run_lightning(args.steps, args.profile),
            "paradis": lambda: run_paradis(args.steps, args.profile),
        }[loop]
        seconds = run()
        print(f"{loop}: {1000 * seconds / (args.steps - WARMUP):.2f} CPU ms/step", flush=True)


if __name__ == "__main__":
    main()
