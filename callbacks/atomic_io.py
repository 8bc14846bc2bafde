"""`AtomicCheckpointIO` writes a checkpoint to a temporary file next to the target, fsyncs it and renames it over
the target: a reader sees the previous file or the new one, never a partial one (Lightning's own `_atomic_save`
puts its temporary file in the system temp folder, so the final move is a copy across file systems, without
fsync, and a `kill -9` leaves the temporary file behind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to `.<name>.tmp` in the target's folder, fsync, then `os.replace` onto the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(checkpoint, Path(path))


class CheckpointNotWritten(OSError):
    """A checkpoint could not be written (disk full, permissions); `str()` is the sentence a user sees."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_atomically(obj: Any, path: Path) -> None:
    """Save `obj` with `torch.save` so that `path` is at every moment the old file or the complete new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, CheckpointNotWritten):
            raise CheckpointNotWritten(err.errno, (
                f"Cannot write {path} ({err.strerror or err}); free space or fix the permissions of {path.parent}, "
                "then resume with `--ckpt_path last` (the previous checkpoint there is intact)."
            )) from err
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
