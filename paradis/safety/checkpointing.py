"""`last.ckpt` that is the run's last state, whatever stopped it (`best.ckpt` is Lightning's own `ModelCheckpoint`).

Lightning 2.6 alone leaves an older `last.ckpt` after a stop on `max_steps`, `max_time` or between two
validations (`save_last` copies only after a top-k save), saves nothing on SIGTERM (it raises `SIGTERMException`
at the next batch boundary) unless `save_on_exception`, which may save mid-step, and Ctrl-C raises anywhere.
`RunCheckpoint` (a `Checkpoint`, so it runs after the other callbacks):
  * writes `last.ckpt` after every training epoch and mid-epoch validation, every `every_n_steps` optimizer steps
    and `every_n_minutes` of training (`paradis.safety.resume.ExactResume` makes mid-epoch states resumable), when
    training ends, and on an exception, unless it holds this step already; never inside an optimizer step or a
    validation (EMA weights swapped in): no run can continue from there;
  * holds SIGTERM and the first Ctrl-C until the end of the next training batch that takes an optimizer step
    (every rank agreeing) and saves there; the stop is then pending, and the first of this callback's hooks that
    fires next acts on it: it raises Lightning's public `SIGTERMException` (what Lightning's own SIGTERM stop
    raises: `on_exception`, no end-of-training hooks), saving first where the state changed since. That hook is
    the end of a validation that follows the batch in the middle of an epoch (saved), else the next batch's
    start; after an epoch's last batch, the epoch end runs its hooks and logs its metrics first (saved there),
    and the next epoch's start or, when that epoch was the last, `on_train_end` stops (the exit code still says
    "stopped"). So no hook predicts whether a validation follows, and the saved state is one Lightning resumes
    exactly. A second Ctrl-C or SIGTERM stops at once;
  * keeps the mid-epoch state of a stop in the middle of an epoch (max_steps, max_time, early stopping): once
    the loops mark the epoch complete, a resume would skip the rest of it.
Checkpoints are written by `paradis.safety.atomic_io.AtomicCheckpointIO` (atomic, never with non-finite weights).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from paradis.safety.atomic_io import CheckpointNotWritten


class RunCheckpoint(Checkpoint):
    """Keeps `<dirpath>/last.ckpt` the run's latest state; also every `every_n_minutes` / `every_n_steps` (0: never)."""

    def __init__(self, dirpath: str | Path, every_n_minutes: float | None = None, every_n_steps: int = 0) -> None:
        if (every_n_minutes or 0) < 0 or every_n_steps < 0:
            raise ValueError(
                f"Checkpoint intervals must be positive (or 0 for never), got {every_n_minutes} "
                f"minutes and {every_n_steps} steps; fix --checkpoint.every_n_minutes / "
                "--checkpoint.every_n_steps."
            )
        self.last_path = str(Path(dirpath) / "last.ckpt")
        self.every_n_minutes, self.every_n_steps = every_n_minutes or 0, every_n_steps
        self._last_step_in_last: int | None = None  # global step that last.ckpt holds
        self._last_write = time.monotonic()
        self._step_at_batch_start = -1  # global step when the current training batch began (see _stepped)
        self._unsafe = False  # between an optimizer step and the end of its batch
        self.stop_reason: str | None = None  # "Ctrl-C" or "SIGTERM" once the run was asked to stop by one
        self._stop_pending = False  # last.ckpt holds the stop's batch: the next boundary ends fit (see the module)
        self._previous_handlers: dict = {}
        self._training = False  # between on_train_start and on_train_end
        self._kept_step: int | None = None  # a stop in the middle of an epoch: last.ckpt is final for this step
        self._held_stop = False  # a stop asked for during gradient accumulation, waiting for its step

    # -- SIGTERM and Ctrl-C: save at the next step's batch end, stop at the boundary after it -----------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_write = time.monotonic()
        self.stop_reason, self._stop_pending, self._training = None, False, True
        if threading.current_thread() is threading.main_thread():
            signums = (signal.SIGINT, signal.SIGTERM)
            self._previous_handlers = {s: signal.signal(s, self._on_signal) for s in signums}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_reason is None:  # stop after the current training batch (see on_train_batch_end)
            self.stop_reason = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        elif signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        else:  # a second SIGTERM: stop now (on_exception saves unless inside a step or a validation)
            raise SIGTERMException

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous_handlers.items():
                signal.signal(signum, previous)
        self._previous_handlers = {}

    def _stop_if_pending(self, trainer: Trainer, save: bool = False) -> None:
        """A boundary after the stop's batch: end `fit` as Lightning's SIGTERM stop does, on every rank (the stop
        became pending at the same batch everywhere); with `save`, the state changed since that batch's save."""
        if self._stop_pending:
            if save:
                self.write_last(trainer)
            raise SIGTERMException

    def _stop_requested(self, trainer: Trainer) -> bool:
        """Any rank received SIGTERM / Ctrl-C (under DDP one all-reduce per batch, so all stop at the same batch)."""
        stop = self.stop_reason is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            self.stop_reason = self.stop_reason or ("SIGTERM" if stop else None)
        return stop

    # -- the points where last.ckpt is written ----------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_pending(trainer)  # on_train_epoch_end saved the epoch end

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._stop_if_pending(trainer)  # neither a validation nor an epoch end followed the stop's batch
        self._step_at_batch_start = trainer.global_step

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        self._unsafe = True

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._unsafe = False
        if not self._stepped(trainer):
            return self._hold_stop(trainer)
        if self._held_stop:  # the accumulated step is taken: the stop asked for during the accumulation happens now
            trainer.should_stop, self._held_stop = True, False
        if self._stop_requested(trainer):  # save this state; the next boundary stops every rank
            if self._last_step_in_last != trainer.global_step:
                self.write_last(trainer)
            self._stop_pending = True
            if not self._epoch_done(trainer):  # (an epoch loop that ends here, e.g. max_steps: keep this file)
                self._kept_step = trainer.global_step
            return
        if trainer.fast_dev_run:
            return
        late = self.every_n_minutes and time.monotonic() - self._last_write >= 60 * self.every_n_minutes
        if self.every_n_minutes:
            late = bool(trainer.strategy.broadcast(late))  # rank 0's clock decides for every rank
        # Training stops after this batch (max_steps, or should_stop from max_time, early stopping...) mid-epoch:
        # save now, while the loops still say "mid-epoch", and keep that file from the epoch-end save.
        max_steps_reached = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
        if (max_steps_reached or self._stopping_mid_epoch(trainer)) and not self._epoch_done(trainer):
            self.write_last(trainer)
            self._kept_step = trainer.global_step
        elif late or (self.every_n_steps and trainer.global_step % self.every_n_steps == 0):
            self.write_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._training:
            return
        mid_epoch = not self._epoch_done(trainer)  # (after the epoch's last batch, on_train_epoch_end saves)
        if mid_epoch:  # the validation that followed the stop's batch (at the last batch: the epoch end's hooks)
            self._stop_if_pending(trainer, save=True)
        if trainer.fast_dev_run:
            return
        if not self._stepped(trainer):  # a validation in the middle of gradient accumulation: not resumable
            return self._hold_stop(trainer)
        if mid_epoch and self._kept_step != trainer.global_step:
            self.write_last(trainer)
        if mid_epoch and self._stopping_mid_epoch(trainer):  # e.g. early stopping: keep it from the epoch-end save
            self._kept_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # (a pending stop is acted on at the next epoch's start: this epoch's metrics are logged after this hook)
        if trainer.fast_dev_run:
            return
        if self._kept_step != trainer.global_step and self._stepped(trainer):
            self.write_last(trainer)

    def _hold_stop(self, trainer: Trainer) -> None:
        """Hold a stop asked for mid gradient accumulation (max_time, early stopping) until the accumulated step."""
        if self._stopping_mid_epoch(trainer):
            self._held_stop, trainer.should_stop = True, False

    def _stepped(self, trainer: Trainer) -> bool:
        """The last training batch took an optimizer step (it did not end in the middle of gradient accumulation);
        valid from its end until the next batch starts, which is where its validation and epoch end run."""
        return trainer.global_step != self._step_at_batch_start

    @staticmethod
    def _stopping_mid_epoch(trainer: Trainer) -> bool:
        """`should_stop` is set and the loop will obey it (`min_epochs` / `min_steps` are met)."""
        loop = trainer.fit_loop
        met_min_epochs = not loop.min_epochs or loop.epoch_progress.current.processed >= loop.min_epochs
        met_min_steps = not loop.min_steps or trainer.global_step >= loop.min_steps
        return trainer.should_stop and met_min_epochs and met_min_steps

    @staticmethod
    def _epoch_done(trainer: Trainer) -> bool:
        return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    # -- the moment training stops ----------------------------------------------------------------------------
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_pending(trainer)  # the stop's batch or epoch end was the last: exit as stopped, not finished
        self._training = False
        if self._last_step_in_last != trainer.global_step:
            self.write_last(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not self._training or self._last_step_in_last == trainer.global_step:
            return
        if isinstance(exception, CheckpointNotWritten):  # writing again would fail again (disk full)
            return
        if self._unsafe or trainer.validating:
            if trainer.is_global_zero:
                rank_zero_warn(
                    f"Stopped inside a step or a validation: {self.last_path} keeps the state of step "
                    f"{self._last_step_in_last}."
                )
            return
        try:
            self.write_last(trainer)
        except OSError as err:  # e.g. the disk is full: keep the exception that stopped training
            rank_zero_warn(str(err))

    def write_last(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(
            self.last_path, weights_only=False
        )  # the whole state (set: Lightning logs a line when unset)
        self._last_step_in_last, self._last_write = trainer.global_step, time.monotonic()
