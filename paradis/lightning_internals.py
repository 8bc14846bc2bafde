"""Every private name of Lightning, torch and Optuna that Paradis uses, in one module (issue 18).

Lightning 2.6 has no public way to do the few things below; each piece says which Lightning behaviour it
works around, and the upstream issue where there is one. Nothing else in the project may take a private name
from those libraries (tests/test_surface.py walks every file), and `INTERNALS` lists each one with the signature
used here: after an upgrade, tests/test_surface.py fails first, in one place, and this is the file to fix.
docs/design.md ("Workarounds") says why each one exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.cli import LightningCLI
from torch.optim.swa_utils import AveragedModel


def stop_like_sigterm(trainer: Trainer) -> None:
    """Make `fit` stop as a SIGTERM stops it: `SIGTERMException` at the next batch boundary, `on_exception`, no
    end-of-training hooks. `Trainer.received_sigterm` is read-only (#16501) and set only by Lightning's own signal
    handler, which under DDP also kills the other ranks' processes; `trainer.should_stop` instead finishes the run
    (a last validation, `on_train_end`, exit 0), which a stop asked for by SIGTERM or Ctrl-C must not do."""
    trainer._signal_connector.received_sigterm = True


def validation_follows(trainer: Trainer) -> bool:
    """Whether the epoch loop runs a validation right after the training batch that just ended. The loop asks
    `_should_check_val_fx(_data_fetcher)`; its answer depends on `val_check_interval` (batches or time),
    `check_val_every_n_epoch`, `should_stop`, `min_epochs`/`min_steps` and the data fetcher, with no public method
    that gives it. A stop asked for at this batch waits for that validation (see callbacks/checkpointing.py)."""
    fit_loop = trainer.fit_loop
    return bool(fit_loop.epoch_loop._should_check_val_fx(fit_loop._data_fetcher))


def averaged_model(callback: WeightAveraging) -> AveragedModel | None:
    """The `AveragedModel` of a `WeightAveraging` callback (None outside `fit`). Lightning keeps it in
    `_average_model` with no accessor, and swaps it in for validation even before its first update (#21724)."""
    return callback._average_model


class CheckpointArgumentsCLI(LightningCLI):
    """`LightningCLI` whose step that reads a `--ckpt_path FILE`'s hyperparameters into the model's config is the
    public method `read_checkpoint_arguments`. Lightning's own step, `_parse_ckpt_path`, has no hook; it loads the
    whole checkpoint (no mmap) and passes every saved argument back, also those the CLI links from the data
    module, which then fail to parse (#20801, fix proposed in #21116)."""

    def _parse_ckpt_path(self) -> None:
        self.read_checkpoint_arguments()

    def read_checkpoint_arguments(self) -> None:
        super()._parse_ckpt_path()


class Instance:
    """For `INTERNALS`: the attribute is set on instances, so the check builds one with `build()`."""

    def __init__(self, build: Callable[[], Any], what: str) -> None:
        self.build, self.what = build, what

    def __repr__(self) -> str:
        return self.what


def _fit_loop() -> Any:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit_loop


# (object, private attribute, parameter names of the method, or None for a non-callable) for tests/test_surface.py
INTERNALS: list[tuple[Any, str, tuple[str, ...] | None]] = [
    (Instance(lambda: _fit_loop().trainer, "a Trainer"), "_signal_connector", None),
    (
        Instance(lambda: _fit_loop().epoch_loop, "Trainer.fit_loop.epoch_loop"),
        "_should_check_val_fx",
        ("data_fetcher",),
    ),
    (Instance(_fit_loop, "Trainer.fit_loop"), "_data_fetcher", None),
    (Instance(lambda: WeightAveraging(), "a WeightAveraging"), "_average_model", None),
    (LightningCLI, "_parse_ckpt_path", ("self",)),
]
