"""`last.ckpt` that is the run's last state, whatever stopped it, written atomically.

What Lightning 2.6 does by itself (lightning/pytorch/callbacks/model_checkpoint.py, trainer/call.py):
  * `ModelCheckpoint(save_last=True)` writes `last.ckpt` after a validation or a training epoch only, and its
    `on_train_end` writes one only if *nothing* was saved during the run. A run that stops on `max_steps`,
    `max_time` or between two validations (`val_check_interval`) leaves an older `last.ckpt`.
  * On SIGTERM its signal connector sets `trainer.received_sigterm`; the loops raise `SIGTERMException` (a
    `SystemExit`) at the next batch boundary (under DDP rank 0 broadcasts it so every rank stops at the same
    batch); every callback's `on_exception` runs, and nothing is saved unless `save_on_exception=True`.
  * Ctrl-C raises `KeyboardInterrupt` wherever Python happens to be (possibly in the middle of an optimizer
    step); Lightning calls `on_exception` and exits with code 1.
  * Checkpoints are written by `_atomic_save`, an fsspec transaction whose temporary file lives in the system
    temp folder: the final `shutil.move` is a copy when that folder is another file system, there is no
    fsync, and a `kill -9` leaves the temporary file behind.
What `RunCheckpoint` adds (still `ModelCheckpoint` for `best.ckpt` and the epoch-end `last.ckpt`):
  * `last.ckpt` also every `every_n_steps` optimizer steps and every `every_n_minutes` of training
    (mid-epoch: the data loaders and RNGs are restored by `callbacks.resume.ExactResume`);
  * `last.ckpt` when training ends (`on_train_end`), and on SIGTERM, Ctrl-C or another exception
    (`on_exception`), unless it already holds this step; an exception in the middle of an optimizer step or of
    validation (EMA weights swapped in) saves nothing, as that state is not one a run can continue from;
  * SIGTERM and the first Ctrl-C are held until the current training batch ends: `last.ckpt` is written there
    (never in the middle of a validation, whose EMA weights are swapped in), every rank agreeing on the batch,
    and then Lightning's own SIGTERM stop ends the run; a second Ctrl-C stops at once;
  * no checkpoint with a non-finite weight is ever written (`callbacks.divergence` stops such runs first).
`AtomicCheckpointIO` writes a checkpoint to a temporary file next to the target, fsyncs it and renames it over
the target: a reader sees the previous file or the new one, never a partial one.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.atomic_io import AtomicCheckpointIO, CheckpointNotWritten, write_atomically  # noqa: F401 (re-exported)


def weights_are_finite(pl_module: LightningModule) -> bool:
    tensors = [t for t in pl_module.state_dict().values() if torch.is_tensor(t) and t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose `last.ckpt` always holds the run's latest state (see the module docstring).

    Args:
        every_n_minutes: also refresh `last.ckpt` after this many minutes of training (None or 0: never).
        every_n_steps: also refresh `last.ckpt` every this many optimizer steps (0: never).
        **kwargs: `ModelCheckpoint`'s arguments.
    """

    def __init__(self, *args: Any, every_n_minutes: Optional[float] = None, every_n_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if (every_n_minutes or 0) < 0 or every_n_steps < 0:
            raise ValueError(
                f"Checkpoint intervals must be positive (or 0 for never), got {every_n_minutes} minutes and "
                f"{every_n_steps} steps; fix --checkpoint.every_n_minutes / --checkpoint.every_n_steps."
            )
        self.every_n_minutes, self.every_n_steps = every_n_minutes or 0, every_n_steps
        self._last_step_in_last: Optional[int] = None  # global step that last.ckpt holds
        self._last_write = time.monotonic()
        self._step_at_batch_start = -1
        self._unsafe = False  # between an optimizer step and the end of its batch
        self._stop_signal: Optional[str] = None
        self._stop_after: Optional[str] = None  # "batch", "validation" or "epoch": where a requested stop happens
        self._previous_handlers: dict = {}
        self._training = False  # between on_train_start and on_train_end: an exception then saves last.ckpt
        self._kept_step: Optional[int] = None  # a stop in the middle of an epoch: last.ckpt is final for this step
        self._at_step_boundary = True  # the last training batch ended with an optimizer step
        self._held_stop = False  # a stop asked for during gradient accumulation, waiting for its step
        self.started = False  # training began (the run folder now holds this run's files)

    # -- SIGTERM and Ctrl-C: save at the next batch end, then Lightning's own stop --------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_write = time.monotonic()
        self._stop_signal, self._training, self.started = None, True, True
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {s: signal.signal(s, self._make_handler(trainer, s))
                                       for s in (signal.SIGINT, signal.SIGTERM)}

    def _make_handler(self, trainer: Trainer, signum: int):
        def handler(received: int, frame: Any) -> None:
            if self._stop_signal is None:  # stop after the current training batch (see on_train_batch_end)
                self._stop_signal = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            elif signum == signal.SIGINT:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            else:  # a second SIGTERM: Lightning's stop, at the next batch boundary, even inside validation
                trainer._signal_connector.received_sigterm = True

        return handler

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous_handlers.items():
                signal.signal(signum, previous)
        self._previous_handlers = {}

    @property
    def stop_reason(self) -> Optional[str]:
        """'Ctrl-C' or 'SIGTERM' once the run was asked to stop by one, else None."""
        return self._stop_signal

    @staticmethod
    def _stop_point(trainer: Trainer) -> str:
        """Where to stop so the saved state is one Lightning resumes exactly: after the validation that follows
        this batch, after the epoch end when this is its last batch, else right after this batch.
        (Lightning 2.6: `_should_check_val_fx` is what the epoch loop itself asks after each batch.)"""
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher):
            return "validation"
        return "epoch" if epoch_loop.batch_progress.is_last_batch else "batch"

    def _stop_now(self, trainer: Trainer, point: str) -> None:
        if self._stop_after == point:
            self.write_last(trainer)
            trainer._signal_connector.received_sigterm = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # (ModelCheckpoint writes last.ckpt here after a validation)
        if trainer.sanity_checking:
            return
        if not self._at_step_boundary:  # a validation in the middle of gradient accumulation
            self._hold_stop(trainer)
            return
        self._stop_now(trainer, "validation")
        # A validation in the middle of an epoch stopped the run (early stopping): last.ckpt, just written, is
        # the state to resume from; keep it from the epoch-end save that follows (see on_train_batch_end).
        if self._stopping_mid_epoch(trainer) and not self._epoch_done(trainer):
            if self._last_step_in_last != trainer.global_step:
                self.write_last(trainer)
            self._kept_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._stop_now(trainer, "epoch")

    def _stop_requested(self, trainer: Trainer) -> bool:
        """Any rank received SIGTERM / Ctrl-C (under DDP one all-reduce per batch, so all stop at the same batch)."""
        stop = self._stop_signal is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            self._stop_signal = self._stop_signal or ("SIGTERM" if stop else None)
        return stop

    # -- mid-epoch refreshes ----------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        self._unsafe = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._unsafe = False
        stepped = trainer.global_step != self._step_at_batch_start  # not in the middle of gradient accumulation
        self._at_step_boundary = stepped
        if not stepped:
            self._hold_stop(trainer)
            return
        if self._held_stop:  # the accumulated step is taken: the stop asked for during the accumulation happens now
            trainer.should_stop, self._held_stop = True, False
        if self._stop_requested(trainer):  # save this state, then let Lightning stop every rank
            if self._last_step_in_last != trainer.global_step:
                self.write_last(trainer)
            self._stop_after = self._stop_point(trainer)
            if self._stop_after == "batch":
                trainer._signal_connector.received_sigterm = True
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        late = self.every_n_minutes and time.monotonic() - self._last_write >= 60 * self.every_n_minutes
        if self.every_n_minutes:
            late = bool(trainer.strategy.broadcast(late))  # rank 0's clock decides for every rank
        due = late or (bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0)
        # Training stops after this batch (max_steps, or should_stop from max_time, early stopping, ...): in the
        # middle of an epoch, save now, while the loops still say "mid-epoch", and keep that file: Lightning
        # then runs a validation and the epoch-end hooks, after which the loops say the epoch is complete and a
        # resume would skip the rest of it. (At an epoch's last batch the normal epoch-end save is the right one.)
        max_steps_reached = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
        if (max_steps_reached or self._stopping_mid_epoch(trainer)) and not self._epoch_done(trainer):
            self.write_last(trainer)
            self._kept_step = trainer.global_step
        elif due:
            self.write_last(trainer)

    def _hold_stop(self, trainer: Trainer) -> None:
        """A stop asked for in the middle of gradient accumulation (max_time, early stopping) is held until the
        accumulated optimizer step: the state between two steps is one a run can be resumed from exactly."""
        if self._stopping_mid_epoch(trainer):
            self._held_stop, trainer.should_stop = True, False

    @staticmethod
    def _stopping_mid_epoch(trainer: Trainer) -> bool:
        return trainer.should_stop and trainer.fit_loop._can_stop_early

    @staticmethod
    def _epoch_done(trainer: Trainer) -> bool:
        return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    # -- the moment training stops ----------------------------------------------------------------------------
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._training = False
        if self.save_last and self._last_step_in_last != trainer.global_step:
            self.write_last(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if not (self.save_last and self._training) or self._last_step_in_last == trainer.global_step:
            return
        if isinstance(exception, CheckpointNotWritten):  # writing again would fail again (disk full)
            return
        if self._unsafe or trainer.validating:
            if trainer.is_global_zero:
                rank_zero_warn(f"Stopped inside a step or a validation: {self.last_path} keeps the state of step "
                               f"{self._last_step_in_last}.")
            return
        try:
            self.write_last(trainer)
        except OSError as err:  # e.g. the disk is full: keep the exception that stopped training
            rank_zero_warn(str(err))

    # -- writing ------------------------------------------------------------------------------------------------
    @property
    def last_path(self) -> str:
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)

    def write_last(self, trainer: Trainer) -> None:
        """Write `last.ckpt` now, without touching the bookkeeping of the best checkpoint."""
        if not self._finite(trainer):
            return
        self.last_model_path = self.last_path
        trainer.save_checkpoint(self.last_model_path, self.save_weights_only)
        self._last_step_in_last = trainer.global_step
        self._last_write = time.monotonic()

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict) -> None:
        if self._kept_step == trainer.global_step:  # last.ckpt holds the mid-epoch state this run stopped at
            return
        if not self._at_step_boundary:  # a validation in the middle of gradient accumulation: not resumable
            return
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step_in_last = trainer.global_step
        self._last_write = time.monotonic()

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if self._finite(trainer):
            super()._save_checkpoint(trainer, filepath)

    def _finite(self, trainer: Trainer) -> bool:
        if weights_are_finite(trainer.lightning_module):
            return True
        rank_zero_warn(f"Not saving a checkpoint at step {trainer.global_step}: the weights are not finite.")
        return False
