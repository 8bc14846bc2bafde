"""EMA of the weights for any task: Lightning 2.6's `EMAWeightAveraging` with three changes.

The stock callback swaps the average in around validation, copies it into the module at `on_train_end`, and
saves it as `state_dict` (the raw weights as `current_model_state`, restored by `fit --ckpt_path last`), so
predict, the app and export get the EMA. Changes made here:
  * an average not updated yet (e.g. `update_starting_at_step`) is never swapped in, copied or saved (#21724);
  * at the end of training the weights are *swapped*, not copied: `ModelCheckpoint.on_train_end` may write
    `last.ckpt` after this hook, and with the copy its `current_model_state` would be the EMA, losing the raw
    weights for a resume (seen in tests/test_ddpm.py);
  * loading a checkpoint outside `fit` (predict/validate) is silent: `state_dict` already is the EMA.
Only the callback's public surface is used: its `state_dict()` says whether the average was updated, and its
validation hooks are the swap (Lightning keeps the `AveragedModel` itself in a private attribute).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


def has_average(callback: WeightAveraging) -> bool:
    """True once the callback's average has folded in at least one training step. `latest_update_step` (the
    callback's public state, restored from a checkpoint) is the step of the last update, 0 before the first.
    (An update at an epoch end, `should_update(epoch_idx=...)`, is not counted there; `EMA` updates per step.)"""
    return callback.state_dict()["latest_update_step"] > 0


class EMA(EMAWeightAveraging):
    """`EMAWeightAveraging` that never swaps in, copies or saves an average not updated yet (see the module)."""

    _swapped_at_end = False  # True after on_train_end: the module holds the EMA, the average the raw weights

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._swapped_at_end = False

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if has_average(self):  # (Lightning's hook swaps the average in)
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if has_average(self):  # (... and back out)
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if has_average(self):  # the parent's validation hook is its public swap (its own on_train_end copies)
            super().on_validation_epoch_start(trainer, pl_module)
            self._swapped_at_end = True

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if "current_model_state" not in checkpoint:  # outside fit: no average, state_dict is the module's
            return
        if not has_average(self):  # nothing averaged yet: inference uses the raw weights too
            checkpoint["state_dict"] = checkpoint["current_model_state"]
        elif self._swapped_at_end:
            checkpoint["state_dict"], checkpoint["current_model_state"] = (
                checkpoint["current_model_state"],
                checkpoint["state_dict"],
            )

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # restore raw weights + average; otherwise state_dict is the EMA
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


@contextlib.contextmanager
def averaged_weights(trainer: Trainer, pl_module: LightningModule) -> Iterator[None]:
    """Within the block the module holds the EMA weights (when a weight-averaging callback has an updated
    average and they are not already swapped in, i.e. outside validation); swapped back afterwards, with the
    callback's own validation hooks (Lightning's swap, around validation)."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, WeightAveraging) and has_average(c)]
    callback = callbacks[0] if callbacks and not (trainer.validating or trainer.sanity_checking) else None
    if callback is not None:
        callback.on_validation_epoch_start(trainer, pl_module)
    try:
        yield
    finally:
        if callback is not None:
            callback.on_validation_epoch_end(trainer, pl_module)
