"""Small pieces every task's module uses: a LightningModule base, config checks and optimizer construction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import torch
from lightning.pytorch import LightningModule, Trainer

OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]
OPTIMIZERS = get_args(OptimizerName)


class TaskModule(LightningModule):
    """The base of every Paradis task: a `LightningModule` that records what its LR schedule was sized from."""

    schedule_budget: dict | None = None  # when the schedule depends on the run's budget (`budget_sized`)

    def budget_sized(self, length: int, unit: str, option: str) -> int:
        """Return `length` (of the whole run, in `unit`, from the Trainer's `option`) after recording it as what the
        LR schedule is sized for: a resume that would size it differently is refused (paradis/safety/resume.py)."""
        self.schedule_budget = {"length": int(length), "unit": unit, "option": option}
        return length

    @property
    def attached_trainer(self) -> Trainer | None:
        """The Trainer running this module, or None when it is used on its own (`self.trainer` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None


def check_choice(option: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise one clear sentence."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"Unknown {option} '{value}'; choose one of: {', '.join(choices)}.")
    return value


def check_positive(option: str, value: float, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ValueError(f"{option} must be {bound}, got {value}; fix it in the config or on the command line.")
    return value


def check_probability(option: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{option} must be in [0, 1), got {value}.")
    return value


def build_optimizer(
    param_groups: Sequence[dict] | Iterable[torch.nn.Parameter],
    name: OptimizerName,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD or RMSprop (with optional momentum), Adam or AdamW by name."""
    optimizer = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
    }[check_choice("optimizer", name, OPTIMIZERS)]
    extra = {"momentum": momentum} if name in ("sgd", "rmsprop") else {}
    return optimizer(param_groups, lr=lr, weight_decay=weight_decay, **extra)


def decay_param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: biases and normalisation parameters (1-D) are excluded."""
    params = [param for param in module.parameters() if param.requires_grad]
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
