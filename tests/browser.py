"""Headless Chromium for the browser tests: Debian's package, installed by `make install-browser` (which
`.ci/run` calls), driven by Playwright (never `playwright install`, which downloads browsers)."""

from __future__ import annotations

from pathlib import Path

from conftest import require_program

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


def chromium() -> Path:
    """Debian's Chromium; skips the calling test when it is missing (fails it in CI)."""
    return Path(require_program("chromium", "make install-browser"))
