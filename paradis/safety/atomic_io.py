"""`AtomicCheckpointIO` writes a checkpoint to a temporary file next to the target, fsyncs it and renames it over
the target: a reader sees the previous file or the new one, never a partial one (Lightning's own checkpoint
writer puts its temporary file in the system temp folder, so the final move is a copy across file systems,
without fsync, and a `kill -9` leaves the temporary file behind). It never writes a checkpoint whose weights
are not finite (`paradis.safety.divergence` stops such runs first; this is the last line for every checkpoint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec.utils
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to `.<name>.tmp` in the target's folder, fsync, then `os.replace` onto the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not weights_are_finite(checkpoint):
            rank_zero_warn(f"Not saving {path} at step {checkpoint.get('global_step')}: the weights are not finite.")
            return
        if fsspec.utils.get_protocol(str(path)) != "file":  # a remote path: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(checkpoint, Path(path))


def weights_are_finite(checkpoint: dict[str, Any]) -> bool:
    """Every floating-point tensor of the checkpoint's weights (and of the raw weights an EMA keeps) is finite."""
    for key in ("state_dict", "current_model_state"):
        for tensor in (checkpoint.get(key) or {}).values():
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return False
    return True


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
            raise CheckpointNotWritten(
                err.errno,
                (
                    f"Cannot write {path} ({err.strerror or err}); free space or fix the permissions of {path.parent}, "
                    "then resume with `--ckpt_path last` (the previous checkpoint there is intact)."
                ),
            ) from err
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
