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
        sums = [numbers(value).sum(dtype=torch.float32) for value in losses + grads]
        local_ok = not sums or math.isfinite(torch.stack(sums).sum().item())
        ok = trainer.strategy.reduce_boolean_decision(local_ok, all=True) if trainer.world_size > 1 else local_ok
        if ok:  # gradients are already averaged over the ranks; a loss is per rank, so the flag is reduced
            return
        raise Diverged(
            f"{what_diverged(losses, grads, local_ok)} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            "lower --model.lr, set --trainer.gradient_clip_val 1.0, or train in 32-bit precision"
        )


def numbers(value: torch.Tensor) -> torch.Tensor:
    """The numbers of a loss or gradient as a real dense tensor: a sparse one's stored values, a complex one's
    real and imaginary parts."""
    if value.is_sparse:
        value = value.coalesce().values()
    return torch.view_as_real(value) if value.is_complex() else value


def what_diverged(losses: list[torch.Tensor], grads: list[torch.Tensor], local_ok: bool) -> str:
    """Which of them is not finite, for the message (only after the summed check failed)."""
    if local_ok:
        return "the loss or the gradients became non-finite in another process"
    for name, values in (("loss", losses), ("gradients", grads)):
        bad = [v for v in map(numbers, values) if not bool(torch.isfinite(v).all())]
        if bad:
            return f"the {name} became {'NaN' if any(bool(torch.isnan(v).any()) for v in bad) else 'inf'}"
    return "the losses and gradients became too large to sum (over 3e38 in float32)"
