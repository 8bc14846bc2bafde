"""Helpers shared by the reliability tests: run `paradis` in-process, compare two checkpoints exactly, read the
scalars a run logged to TensorBoard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apps.cli import main

# Not part of the training state: where files are, library versions, resume bookkeeping, hyper-parameters.
SKIP_KEYS = {"callbacks", "loops", "hparams_name", "hyper_parameters", "pytorch-lightning_version", "paradis_resume"}

MNIST = [
    "--config",
    "configs/mnist.yaml",
    "--data.download",
    "false",
    "--data.train_subset",
    "512",
    "--data.val_size",
    "256",
    "--data.augment",
    "true",
    "--model.hidden_sizes",
    "[16]",
    "--model.dropout",
    "0.3",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.log_every_n_steps",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]
DDPM = ["--config", "tests/configs/ddpm_tiny.yaml"]


def fit(*args: str) -> int:
    """`paradis fit ARGS` in this process; the exit code (0 when it returns)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["paradis"])
        try:
            main(["fit", *args])
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def differences(a, b, path: str = "") -> list[str]:
    """Every place where two checkpoints' training state differs (tensors compared with torch.equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key in SKIP_KEYS:
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: only in one")
            else:
                out += differences(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if torch.is_tensor(a) and torch.is_tensor(b):
        if a.shape == b.shape and torch.equal(a, b):
            return []
        return [f"{path}: max |diff| {(a.double() - b.double()).abs().max().item() if a.shape == b.shape else 'shape'}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def max_weight_diff(a: dict, b: dict) -> float:
    return max((x.double() - b["state_dict"][k].double()).abs().max().item() for k, x in a["state_dict"].items())


def scalars(run: Path) -> dict[tuple[str, int], list[float]]:
    """{(tag, step): [values in the order the event files were written]} over all event files of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[tuple[str, int], list[float]] = {}
    for events in sorted(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith("perf/") or tag.startswith("time/"):
                continue  # wall-clock speed, not training state
            for event in acc.Scalars(tag):
                out.setdefault((tag, event.step), []).append(event.value)
    return out
