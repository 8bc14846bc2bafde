"""A SHA-256 of the initial weights, so a comparison can prove its variants started from the same point."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

WEIGHTS_FILE = "initial_weights.json"


class InitialWeights(Callback):
    """Writes the parameter count and a SHA-256 of the initial weights to `<run folder>/initial_weights.json`.

    Runs in `setup` (before any step or checkpoint restore), so equal hashes across
    variants prove they started from the same weights.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            tensor = tensor.detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its raw 16-bit words
                tensor = tensor.view(torch.int16)
            digest.update(tensor.numpy().tobytes())
        info = {
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            "trainable_parameters": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "sha256": digest.hexdigest(),
        }
        path = Path(trainer.default_root_dir) / WEIGHTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=1))
