"""What a task's LightningModule provides to the rest of Paradis.

The CLI, the callbacks and the app never import a task; they read these attributes. A fourth task
implements `Task` and, depending on what it does, `Classifier` or `Generator`
(see docs/design.md, "Adding a task").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch


@runtime_checkable
class Task(Protocol):
    """Every task. Used by `apps/cli.py` (best checkpoint, TensorBoard graph) and the lab."""

    #: logged metric that picks `best.ckpt`, e.g. "val/acc"
    monitor: str
    #: "max" when a larger `monitor` is better, else "min"
    monitor_mode: Literal["min", "max"]
    #: an input for the TensorBoard graph and the model summary, or None
    example_input_array: torch.Tensor | None


@runtime_checkable
class Classifier(Task, Protocol):
    """A task that labels inputs (MNIST digits, texts): the app's classifier tabs and `predict` CSVs."""

    #: the label of each output class, in order
    class_names: Sequence[str]

    def classify(self, inputs) -> torch.Tensor | tuple:
        """Class probabilities `[B, len(class_names)]` for a batch of raw inputs (the text task also returns
        which inputs were truncated)."""
        ...


@runtime_checkable
class Generator(Task, Protocol):
    """A task that makes images (DDPM): sample grids, `predict` images, the app's image tab."""

    def sample(
        self,
        n: int,
        steps: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """`n` images `[n, C, H, W]` in [0, 1]; the same `generator` seed gives the same images."""
        ...
