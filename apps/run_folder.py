"""The run folder's safety rules for `paradis fit` (used by apps/cli.py): it must be writable before anything
starts, and a run that fails before its first training step leaves the folder as it found it."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_DIR = "checkpoints"


def check_writable(folder: Path) -> None:
    """Fail before training, with one sentence naming the folder, when the run folder cannot be written."""
    probe_name = f".paradis-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for where in (folder, folder / CHECKPOINT_DIR):
            if where.is_dir():
                (where / probe_name).write_bytes(b"")
                (where / probe_name).unlink()
    except OSError as err:
        problem = err.strerror or str(err)
    else:
        return
    raise PermissionError(  # outside the `except`: the user sees this sentence, not the OSError behind it
        f"The run folder {folder} cannot be written ({problem}); fix its permissions or free space, "
        "or pass --run_dir WRITABLE_FOLDER."
    )


class RunFolderGuard:
    """Remembers what the run folder holds before `fit`; `undo()` removes what a failed start added (the
    TensorBoard event file Lightning opens before the data module's `setup`, the folder itself if it is new).
    Files that were there are never touched."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.existed = folder, folder.exists()
        self.before = set(folder.rglob("*")) if self.existed else set()
        check_writable(folder)

    def undo(self) -> None:
        added = sorted(set(self.folder.rglob("*")) - self.before, key=lambda p: len(p.parts), reverse=True)
        for path in added:  # deepest first: files, then the folders they were in
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:
                pass
        if not self.existed:
            try:
                self.folder.rmdir()
            except OSError:
                pass
