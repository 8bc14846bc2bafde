"""The app's registry: one entry per task. A fourth task adds one `Task` here (and its tab in tabs.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from apps.app import tabs


@dataclass(frozen=True)
class Task:
    key: str  # tab id and the suffix of its `open_<key>` endpoint
    title: str
    class_path: str  # the checkpoint's `_class_path`; nothing else is ever instantiated
    train_command: str
    build_tab: Callable  # (models, picker) -> None: the tab's components and endpoints

    @property
    def cls(self) -> type:
        """The LightningModule class (imported on first use: the app starts without torch models loaded)."""
        import importlib

        module, name = self.class_path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)


TASKS = (
    Task(
        "mnist",
        "MNIST digits",
        "lightning_modules.mnist.MNISTClassifier",
        "paradis fit --config configs/mnist.yaml",
        tabs.mnist_tab,
    ),
    Task(
        "ddpm",
        "DDPM images",
        "lightning_modules.ddpm.DDPM",
        "paradis fit --config configs/ddpm_silhouettes.yaml",
        tabs.ddpm_tab,
    ),
    Task(
        "text",
        "Text",
        "lightning_modules.text.TextClassifier",
        "paradis fit --config configs/text_lora_minilm.yaml",
        tabs.text_tab,
    ),
)
BY_KEY = {task.key: task for task in TASKS}


def task_for(class_path: str | None) -> Task | None:
    return next((task for task in TASKS if task.class_path == class_path), None)
