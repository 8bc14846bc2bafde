"""The process that tests/test_kill.py kills with SIGKILL: `paradis fit` forked from a multiprocessing fork
server that has already imported Paradis (importing this module does it), so each killed run skips the
~6 s of imports."""

from __future__ import annotations

import os
import sys

from apps.cli import main


def run_fit(args: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = ["paradis"]
    code = 0
    try:
        main(["fit", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    os._exit(code)
