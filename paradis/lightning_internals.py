"""Every private name of Lightning, torch and Optuna that Paradis uses, in one module (issue 18).

Lightning 2.6 has no public way to do the one thing below; it says which Lightning behaviour it works around,
and the upstream issue. Nothing else in the project may take a private name
from those libraries (tests/test_surface.py walks every file), and `INTERNALS` lists each one with the signature
used here: after an upgrade, tests/test_surface.py fails first, in one place, and this is the file to fix.
docs/design.md ("Workarounds") says why each one exists.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningCLI


class CheckpointArgumentsCLI(LightningCLI):
    """`LightningCLI` whose step that reads a `--ckpt_path FILE`'s hyperparameters into the model's config is the
    public method `read_checkpoint_arguments`. Lightning's own step, `_parse_ckpt_path`, has no hook; it loads the
    whole checkpoint (no mmap) and passes every saved argument back, also those the CLI links from the data
    module, which then fail to parse (#20801, fix proposed in #21116)."""

    def _parse_ckpt_path(self) -> None:
        self.read_checkpoint_arguments()

    def read_checkpoint_arguments(self) -> None:
        super()._parse_ckpt_path()


# (object, private attribute, parameter names of the method, or None for a non-callable) for tests/test_surface.py
INTERNALS: list[tuple[Any, str, tuple[str, ...] | None]] = [
    (LightningCLI, "_parse_ckpt_path", ("self",)),
]
