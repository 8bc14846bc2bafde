"""Headless Chromium for the browser tests: Debian's package (installed when missing) driven by Playwright
(never `playwright install`, which downloads browsers). /work/shared/DESIGN.md "Browser tests"."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def ensure_chromium() -> Path:
    """Install Debian's chromium when missing (as root, with apt); skip the calling test when that cannot work."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (
            ["apt-get", "install", "-y", "-q", "chromium"],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "chromium"],
        ):
            subprocess.run(
                command, capture_output=True, timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            )
            if CHROMIUM.exists():
                break
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM} and could not be installed (needs root and "
            "`apt-get install chromium`)."
        )
    return CHROMIUM
