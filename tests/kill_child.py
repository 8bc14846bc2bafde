"""The process that tests/test_kill.py kills with SIGKILL: `paradis fit` forked from a multiprocessing fork
server that has already imported Paradis and unpickled the bundled MNIST (importing this module does both),
so each killed run starts training in well under a second instead of paying the ~6 s start-up again."""

from __future__ import annotations

import os
import sys

from apps.cli import main
from datamodules.mnist import load_bundled

load_bundled()  # cached in the fork server, shared by every child


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
