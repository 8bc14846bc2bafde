"""Shared test set-up: offline, CPU-only, every run in a tmp folder."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import warm_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Nothing in the tests may reach the network or a GPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PYTHONWARNINGS", "ignore")


class WarmParadis:
    """tests/warm_server.py, importing what `paradis` imports (~25 s), started once (on first use) in this test
    process: runs `paradis ARGS` in a forked child, with this process's environment at the time of the call (or
    `env`). The child's argv[0] is the real script, so that a DDP run's other ranks, which Lightning starts as
    `python argv[0] ARGS`, are real `paradis` processes."""

    server: subprocess.Popen | None = None

    @classmethod
    def run(cls, args: list[str], cwd: Path, timeout: float, env: dict | None) -> subprocess.CompletedProcess:
        if cls.server is None:
            cls.server = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "warm_server.py"), "paradis"],
                cwd=ROOT,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert json.loads(cls.server.stdout.readline()) == {"ready": True}
            atexit.register(cls.server.stdin.close)  # the server ends when its stdin does
        with tempfile.TemporaryDirectory() as logs:
            out, err = Path(logs) / "out", Path(logs) / "err"
            job = {"entry": "script:apps.cli:main", "argv": [str(BIN / "paradis"), *args], "cwd": str(cwd)}
            job.update(env=dict(env or os.environ), log=str(out), err=str(err))
            code = warm_server.wait_for(cls.server, warm_server.send(cls.server, job, wait=True), timeout)
            return subprocess.CompletedProcess(["paradis", *args], code, out.read_text(), err.read_text())


def run_paradis(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
    warm: bool = True,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """`paradis ARGS`: in a child of the warm server, or (`warm=False`, where the real process is the point)
    the real console script in a subprocess. Returns the completed process."""
    if warm:
        proc = WarmParadis.run(list(args), cwd or ROOT, timeout, env)
    else:
        proc = subprocess.run(
            [str(BIN / "paradis"), *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout
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
