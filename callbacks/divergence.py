"""Stop a diverging run at the first non-finite loss or gradient, before it reaches the weights.

Lightning 2.6 has `detect_anomaly` (slow, and it still steps) and `EarlyStopping(check_finite=True)` (after
a validation, once the weights are already NaN); torchmetrics drops NaN values with a warning, so a diverged
run's metrics can look fine. `DivergenceGuard` checks, before every optimizer step (`on_before_optimizer_step`),
that the losses of the accumulated micro-batches (`on_before_backward`) and all gradients are finite, in one
device-to-host sync, and raises `Diverged` otherwise: the step is never taken, so the weights, the optimizer
state and the EMA keep their last finite values, and `RunCheckpoint` writes them to `last.ckpt`.
Under `16-mixed` the GradScaler skips steps with inf/NaN gradients by design (and lowers its scale), so there
only the loss is checked. Under DDP the gradients are already averaged over the ranks; the loss flag is
reduced too, so every rank stops at the same step.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class Diverged(ArithmeticError):
    """Training produced a non-finite loss or gradient; the message is the one sentence a user sees."""


class DivergenceGuard(Callback):
    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []  # the micro-batch losses of the coming optimizer step

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach().float().reshape(-1))

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        losses = torch.cat(self._losses) if self._losses else torch.zeros(1)
        self._losses = []
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and getattr(trainer.precision_plugin, "scaler", None) is None:
            # the max-norm of a gradient with a NaN or an inf in it is not finite
            grad_max = torch.stack(torch._foreach_norm(grads, float("inf"))).float().to(losses.device)
        else:  # none, or the GradScaler handles them (it skips the step)
            grad_max = torch.zeros(1, device=losses.device)
        values = torch.cat([losses, grad_max])
        loss_finite, grads_finite, any_nan = torch.stack(
            [torch.isfinite(losses).all(), torch.isfinite(grad_max).all(), torch.isnan(values).any()]).tolist()
        ok = loss_finite and grads_finite
        if trainer.world_size > 1:  # gradients are already averaged over the ranks; a loss is per rank
            ok = trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return
        kind = "NaN" if any_nan else "inf"
        what = (f"the loss became {kind}" if not loss_finite else f"the gradients became {kind}" if not grads_finite
                else "the loss became non-finite in another process")
        raise Diverged(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}; lower --model.lr, "
            "set --trainer.gradient_clip_val 1.0, or train in 32-bit precision"
        )
