"""GPU helpers a task's module uses for the speed settings `callbacks.cuda_speed.CudaSpeed` asks it for
(the callback sets the process-wide TF32 / cuDNN flags itself and calls the module's `speed_up`):

    adamw(params, lr, device, fused=True)    fused AdamW on CUDA (one kernel for all params)
    fused_allowed(trainer)                   False where Lightning would refuse a fused optimizer
    Compiled(module)                         torch.compile with a one-line fallback to eager

Use from a LightningModule: `adamw` in `configure_optimizers`, `Compiled(self.net)` in `speed_up` and call it
in `forward` (see `lightning_modules/ddpm.py`). Lightning already copies batches with `non_blocking=True` to
CUDA; a DataLoader needs `pin_memory=True` for those copies to overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info


def is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def adamw(
    params: Iterable[Any], lr: float, device: torch.device | str, fused: bool = True, **kwargs: Any
) -> torch.optim.AdamW:
    """AdamW, fused on CUDA when `fused` (one kernel per step instead of one per parameter), else PyTorch's
    default (foreach, multi-tensor)."""
    if fused and is_cuda(device):
        return torch.optim.AdamW(params, lr=lr, fused=True, **kwargs)
    return torch.optim.AdamW(params, lr=lr, **kwargs)


def fused_allowed(trainer: Any) -> bool:
    """False when Lightning would refuse a fused optimizer: its mixed-precision plugin (16-mixed and bf16-mixed
    alike) raises at the first step when gradient clipping is on and the optimizer unscales its own gradients
    (lightning/pytorch/plugins/precision/amp.py `clip_gradients`; seen on an H200 with bf16-mixed)."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    if trainer is None:
        return True
    return not (trainer.gradient_clip_val and isinstance(trainer.precision_plugin, MixedPrecision))


class Compiled:
    """`torch.compile(module)` used as `Compiled(module)(*args)`; not an `nn.Module` attribute, so state
    dicts, checkpoints and copies of the owner never see it. Compilation happens at the first call; if it
    fails (no C++ compiler / Triton, an unsupported op) one line says so and the module runs eagerly."""

    def __init__(self, module: torch.nn.Module, mode: str | None = None, backend: Any = "inductor") -> None:
        self.module = module
        self.compiled = torch.compile(module, mode=mode, backend=backend)
        self.checked = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.module(*args, **kwargs)
        if self.checked:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure: fall back, say why in one line
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            rank_zero_info(
                f"torch.compile could not compile {type(self.module).__name__} ({reason}); "
                "running eagerly instead (CudaSpeed's compile: false skips the attempt)."
            )
            self.compiled = None
            return self.module(*args, **kwargs)
        self.checked = True
        return out
