"""Shared test set-up: offline, CPU-only, every run in a tmp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Nothing in the tests may reach the network or a GPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PYTHONWARNINGS", "ignore")


def run_paradis(
    *args: str, cwd: Path | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the real `paradis` console script in a subprocess; returns the completed process."""
    proc = subprocess.run(
        [str(BIN / "paradis"), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"paradis {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def require_program(name: str, install: str) -> str:
    """The path of a program a test needs. Missing, it skips the test with the reason, except in CI (`.ci/run`
    sets CI=true), where a missing program is a failure: what CI runs must really run."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: run `{install}`."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def paradis():
    return run_paradis
