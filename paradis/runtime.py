"""Process-wide settings that make a training step cheaper, applied once at start-up by `paradis`."""

from __future__ import annotations

import os

import torch

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_nvml_probe_without_gpu() -> bool:
    """On a machine without a visible CUDA device, let `torch.cuda.is_available()` answer from the CUDA runtime.

    Importing Lightning sets `PYTORCH_NVML_BASED_CUDA_CHECK=1` (an NVML query, so a fork after the check is safe).
    torch's Adam/AdamW call `torch.accelerator.current_accelerator(check_available=True)` on every `step()`;
    with the variable set and CUDA not initialised, that `dlopen`s NVML each time: measured ~0.15-0.4 ms per
    optimizer step with a CUDA build of torch on a GPU-less machine (~1 us without). With no device visible
    there is no CUDA context to protect across a fork, so the variable is set to "0" (torch's documented
    default). With a GPU visible nothing changes. Returns True when it changed the setting.
    """
    if os.environ.get(NVML_CHECK) != "1" or not torch.backends.cuda.is_built() or torch.cuda.device_count() > 0:
        return False
    os.environ[NVML_CHECK] = "0"
    return True
