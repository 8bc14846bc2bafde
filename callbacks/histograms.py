"""Weight and gradient histograms, and gradient norms, per layer in TensorBoard."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm, rank_zero_only

NORM_PREFIX, NORM_TOTAL = "grad_2.0_norm/", "grad_2.0_norm_total"


class GradientHistograms(Callback):
    """Every `every_n_steps` optimizer steps, log for each parameter tensor:
    `weights/<name>` and `gradients/<name>` histograms and `grad_norm/<name>` scalars
    (plus `grad_norm/total`).

    Runs after backward (gradients are unscaled under mixed precision and already
    all-reduced under DDP), on rank zero only. On the other steps it does one
    integer comparison.
    """

    def __init__(self, every_n_steps: int = 100, histograms: bool = True, norms: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        self.histograms = histograms
        self.norms = norms

    @rank_zero_only
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        step = trainer.global_step
        if step % self.every_n_steps:
            return
        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if writer is None:
            return
        for name, param in pl_module.named_parameters():
            if self.histograms:
                writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
                if param.grad is not None:
                    writer.add_histogram(f"gradients/{name}", param.grad.detach().float().cpu(), step)
        if self.norms:
            # Lightning's own utility: {"grad_2.0_norm/<name>": ..., "grad_2.0_norm_total": ...}
            for key, norm in grad_norm(pl_module, norm_type=2).items():
                name = "total" if key == NORM_TOTAL else key[len(NORM_PREFIX) :]
                writer.add_scalar(f"grad_norm/{name}", float(norm), step)
