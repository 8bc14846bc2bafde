"""Process-wide settings that make a training step cheaper, applied once at start-up by `paradis`."""

from __future__ import annotations

import gc
import os

import torch

from paradis.quiet import silence_library_noise

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


def prepare_process(console: bool) -> None:
    """What `paradis` does once at start-up, after its imports.

    `console` is true for the console script (not for an in-process caller such as a test, which would keep its
    garbage): then the ~10^6 objects the imports made, which live until the process ends, are taken out of the
    garbage collector's view (`gc.freeze()`). Measured: the interpreter's exit costs ~1.3 s less CPU, and
    generation-2 collections during training skip them.
    """
    silence_library_noise()
    skip_nvml_probe_without_gpu()
    if console:
        gc.freeze()
