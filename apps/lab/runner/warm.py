"""Imported once by the lab's forkserver (apps/lab/runner/worker.py): everything a `paradis fit` + `test` of
the MNIST lab imports, so each forked run starts warm. Importing this module has only that effect.
(Data is not preloaded: the bundled MNIST loads from its uint8 cache in ~20 ms, datamodules/mnist.py.)"""

from __future__ import annotations

import importlib
import os

from apps.lab.runner.worker import PARENT_ENV, die_with_parent

WARM_MODULES = (
    "apps.cli",
    "lightning.pytorch",
    "lightning.pytorch.loggers.tensorboard",
    "torch.utils.tensorboard",
    "torchmetrics.classification",
    "jsonargparse",
    "apps.lab.runner.callbacks",
    "fsspec",  # the rest are imported on first use by a checkpoint save and TensorBoard
    "attr",
)

for name in WARM_MODULES:
    try:
        importlib.import_module(name)
    except ImportError:  # an optional piece (e.g. tensorboard) that a run would import lazily anyway
        pass


die_with_parent(
    int(os.environ.get(PARENT_ENV, os.getppid()))
)  # the forkserver (and so, through theirs, its runs) ends when `paradis-lab` is killed
