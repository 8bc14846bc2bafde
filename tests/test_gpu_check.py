"""`make gpu-check` cannot rot: its `--dry-run` (the same code at toy sizes, on CPU) runs every section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_gpu_check_dry_run_writes_every_section(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert gpu_check.main([str(tmp_path), "--dry-run"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["sections"]) == list(gpu_check.SECTIONS)
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section["error"])
    tasks = {k: v for k, v in report["sections"]["tasks"].items() if not k.startswith("_")}
    assert len(tasks) == 4 * 2 and all(run["ok"] for run in tasks.values()), tasks
    ddpm = report["sections"]["ddpm"]
    assert (
        ddpm["32 / paradis"]["images_per_s"] > 0
        and ddpm["bf16-mixed + gradient checkpointing / bare diffusers loop"]["images_per_s"] > 0
    )
    assert ddpm["32 / bare diffusers loop"]["ema_update_ms"] > 0
    assert report["sections"]["text"]["hf Trainer + peft samples/s"] > 0
    assert (tmp_path / "cats64_samples.png").is_file() and (tmp_path / "cats64_loss.png").is_file()
    ddpm64 = report["sections"]["ddpm64"]
    assert min(v for k, v in ddpm64.items() if k.endswith("images/s")) > 0 and ddpm64["paradis / bare"] > 0
    guard = report["sections"]["guard16"]
    assert guard["overflow ok"] and guard["nan ok"] and "the loss became NaN" in guard["nan: message"]
    train = report["sections"]["train64"]
    samples = [np.load(tmp_path / name) for name in train["sample_files"]]
    assert sum(map(len, samples)) == train["ema_samples"] and all(
        s.dtype == np.uint8 and s.shape[1:] == (16, 16, 3) for s in samples
    )
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.startswith(f"# Paradis GPU check: {report['device']}") and "## train64" in markdown


def test_gpu_check_without_a_gpu_says_so(capsys):
    if torch.cuda.is_available():
        return
    assert gpu_check.main(["unused"]) == 2
    assert "No CUDA GPU" in capsys.readouterr().err
