"""How fast a run goes on this machine, kept out of the model (issue 29): one callback in the config's
`trainer.callbacks`, so a checkpoint's `hyper_parameters` hold what defines the model and nothing else.

    CudaSpeed(tf32=True, cudnn_benchmark=True, channels_last=True, fused_adamw=True,
              compile=False, gradient_checkpointing=False)

In `setup` (every stage, once the device is known, before the optimizer is built):
  * on CUDA only, process-wide: TF32 float32 matmuls and convolutions (`torch.set_float32_matmul_precision`
    "high": ~3x faster on Ampere+, 10-bit mantissa inputs, fp32 accumulation; "highest" when off) and cuDNN
    autotuning for fixed input shapes (`cudnn.benchmark`). The flags as they were are put back in `teardown`
    (or `on_exception`), so nothing process-wide outlives the fit, test or predict that asked for it;
  * on CUDA only, in the module: channels-last (NHWC) weights and inputs, and fused AdamW;
  * on any device, both off by default: `torch.compile` of the network (one line and eager mode where it
    cannot compile) and gradient checkpointing (less activation memory, more time).
The module does the module-side part in its `speed_up(channels_last, fused_adamw, compile,
gradient_checkpointing)` (lightning_modules/ddpm.py); a module without one is refused in one sentence.
Switch one off from the command line: `--trainer.callbacks.init_args.tf32 false` (CudaSpeed is the last
callback of the configs that list it, and that option sets the last one).
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class CudaSpeed(Callback):
    """CUDA speed settings for the run (see the module docstring); none of them changes what the model is."""

    def __init__(
        self,
        tf32: bool = True,
        cudnn_benchmark: bool = True,
        channels_last: bool = True,
        fused_adamw: bool = True,
        compile: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        self.tf32 = tf32
        self.cudnn_benchmark = cudnn_benchmark
        self.channels_last = channels_last
        self.fused_adamw = fused_adamw
        self.compile = compile
        self.gradient_checkpointing = gradient_checkpointing
        self._saved: tuple[str, bool, bool] | None = None  # the process-wide flags before `setup` changed them

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        speed_up = getattr(pl_module, "speed_up", None)
        if not callable(speed_up):
            raise TypeError(
                f"CudaSpeed needs a model with a speed_up(...) method (DDPM has one); {type(pl_module).__name__} "
                "has none: drop callbacks.cuda_speed.CudaSpeed from the config's trainer.callbacks."
            )
        cuda = trainer.strategy.root_device.type == "cuda"
        if cuda and self._saved is None:
            cudnn = torch.backends.cudnn
            self._saved = (torch.get_float32_matmul_precision(), cudnn.allow_tf32, cudnn.benchmark)
            torch.set_float32_matmul_precision("high" if self.tf32 else "highest")
            cudnn.allow_tf32 = self.tf32
            cudnn.benchmark = self.cudnn_benchmark
        speed_up(
            channels_last=self.channels_last and cuda,
            fused_adamw=self.fused_adamw and cuda,
            compile=self.compile,
            gradient_checkpointing=self.gradient_checkpointing,
        )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.restore()  # (Lightning calls no `teardown` after an exception)

    def restore(self) -> None:
        """Put back the process-wide flags `setup` changed (nothing when it changed none)."""
        if self._saved is None:
            return
        precision, allow_tf32, benchmark = self._saved
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cudnn.benchmark = benchmark
        self._saved = None
