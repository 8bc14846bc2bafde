"""What failed on CUDA the first time Paradis ran on a GPU (an H200, 2026-12-04), covered here on the CPU."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from datamodules.tensor_batches import TensorBatches
from lightning_modules import gpu


def test_shuffled_batches_are_indexed_on_the_data_device(monkeypatch):
    """Images held on the GPU were indexed with the CPU permutation: every DDPM run on CUDA stopped at its first
    batch ('index is on cpu, different from other tensors on cuda:0'). The meta device stands in for CUDA."""
    devices = []
    index_select = torch.Tensor.index_select

    def recording(self, dim, index):
        devices.append((self.device, index.device))
        return index_select(self, dim, index)

    monkeypatch.setattr(torch.Tensor, "index_select", recording)
    batches = TensorBatches((torch.zeros(10, 3, device="meta"),), batch_size=4, shuffle=True, seed=0)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert devices and all(index == data == torch.device("meta") for data, index in devices)


def quiet_trainer(**kwargs) -> Trainer:
    return Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def test_fused_adamw_is_not_used_where_lightning_refuses_it():
    """Lightning's mixed-precision plugin refuses gradient clipping with a fused AdamW, in bf16-mixed too (no
    GradScaler there): the DDPM's fused default stopped every clipped bf16 run on the H200 at its first step."""
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    fused = torch.optim.AdamW([param], fused=True)  # fused AdamW exists on the CPU too (torch >= 2.4)
    clipped_bf16 = quiet_trainer(precision="bf16-mixed", gradient_clip_val=1.0)
    with pytest.raises(RuntimeError, match="fused"):  # Lightning's own refusal: the reason for the rule
        clipped_bf16.precision_plugin.clip_gradients(fused, 1.0)
    assert not gpu.fused_allowed(clipped_bf16)
    assert gpu.fused_allowed(quiet_trainer(precision="32", gradient_clip_val=1.0))
    assert gpu.fused_allowed(quiet_trainer(precision="bf16-mixed"))
    assert gpu.fused_allowed(None)  # an optimizer built outside a Trainer
