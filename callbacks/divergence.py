"""Stop a diverging run at the first non-finite loss or gradient, before it reaches the weights.

Lightning 2.6 has `detect_anomaly` (slow, and it still steps) and `EarlyStopping(check_finite=True)` (after
a validation, once the weights are already NaN); torchmetrics drops NaN values with a warning, so a diverged
run's metrics can look fine. `DivergenceGuard` checks, before every optimizer step (`on_before_optimizer_step`),
that the losses of the accumulated micro-batches (`on_before_backward`) and all gradients are finite, in one
device-to-host sync of one number, and raises `Diverged` otherwise: the step is never taken, so the weights, the optimizer
state and the EMA keep their last finite values, and `RunCheckpoint` writes them to `last.ckpt`.
The check is the float32 sum of every loss and gradient: a NaN or an inf anywhere makes it non-finite, and one
vectorised sum per tensor costs ~10 us for the MNIST MLP where `_foreach_norm(grads, inf)` cost 265 us (the sum
also overflows for finite values whose total passes 3e38, which is divergence by any measure). Only a failed
check looks closer, to say which one it was.
Under `16-mixed` the GradScaler skips steps with inf/NaN gradients by design (and lowers its scale), so there
only the loss is checked. Under DDP the gradients are already averaged over the ranks; the loss flag is
reduced too, so every rank stops at the same step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class Diverged(ArithmeticError):
    """Training produced a non-finite loss or gradient; the message is the one sentence a user sees."""


class DivergenceGuard(Callback):
    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []  # the micro-batch losses of the coming optimizer step

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        losses, self._losses = self._losses, []
        grads = []
        if getattr(trainer.precision_plugin, "scaler", None) is None:  # else the GradScaler skips such steps
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One number, one device-to-host sync per step: a NaN or an inf anywhere makes the total non-finite.
        sums = [value.sum(dtype=torch.float32) for value in losses + grads]
        ok = not sums or math.isfinite(torch.stack(sums).sum().item())
        if trainer.world_size > 1:  # gradients are already averaged over the ranks; a loss is per rank
            ok = trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return
        loss_finite = all(bool(torch.isfinite(loss).all()) for loss in losses)
        grads_finite = all(bool(torch.isfinite(grad).all()) for grad in grads)
        any_nan = any(bool(torch.isnan(value).any()) for value in losses + grads)
        kind = "NaN" if any_nan else "inf"
        what = (f"the loss became {kind}" if not loss_finite else f"the gradients became {kind}" if not grads_finite
                else "the loss became non-finite in another process" if trainer.world_size > 1
                else "the gradients became too large to sum (over 3e38)")
        raise Diverged(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}; lower --model.lr, "
            "set --trainer.gradient_clip_val 1.0, or train in 32-bit precision"
        )
