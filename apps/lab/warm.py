"""Imported once by the lab's forkserver (apps/lab/worker.py): everything a `paradis fit` + `test` of
the MNIST lab imports, so each forked run starts warm. Importing this module has only that effect
(plus loading the bundled MNIST copy into memory when it is the source a run will use)."""

from __future__ import annotations

import importlib
import os

import torch

from apps.lab.worker import PARENT_ENV, die_with_parent

WARM_MODULES = (
    "apps.cli",
    "lightning.pytorch",
    "lightning.pytorch.loggers.tensorboard",
    "torch.utils.tensorboard",
    "torchmetrics.classification",
    "jsonargparse",
    "callbacks.initial_weights",
    "callbacks.metrics_file",
)

for name in WARM_MODULES:
    try:
        importlib.import_module(name)
    except ImportError:  # an optional piece (e.g. tensorboard) that a run would import lazily anyway
        pass


def _warm_bundled_mnist() -> None:
    """The bundled MNIST (seconds to unpickle) into this process's memory: forked runs share it.
    One intra-op thread so no OpenMP pool exists before the fork."""
    try:
        from datamodules import mnist
    except ImportError:
        return
    loader = getattr(mnist, "load_bundled", None)
    if loader is None:
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loader()
    except (OSError, ValueError, ImportError, RuntimeError):
        pass
    finally:
        torch.set_num_threads(threads)


_warm_bundled_mnist()
die_with_parent(int(os.environ.get(PARENT_ENV, os.getppid())))  # the forkserver (and so, through theirs, its runs) ends when `paradis-lab` is killed
