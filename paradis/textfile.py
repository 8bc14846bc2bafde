"""Reading a user's text file (optionally .gz / .bz2 / .xz) with one clear sentence when it is not UTF-8 text."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class NotText(ValueError):
    """The file is not UTF-8 text; `str()` names the file, the first bad byte and the fix."""


def read_text(path: str | Path) -> str:
    """The whole file decoded as UTF-8 (a BOM is dropped), decompressed first by its suffix."""
    path = Path(path)
    with OPENERS.get(path.suffix.lower(), open)(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start
    raise NotText(  # outside the `except`: the user sees this sentence, not the codec's
        f"{path} is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); save it as UTF-8 "
        f"(e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}`) and pass that file."
    )
