"""The one place that silences library messages that are not the user's business.

Called once at start-up by the entry points (`paradis`, and any app that trains). Each filter is
narrow (one message, one category), so every other warning still reaches the user:

- `torch.jit.trace` / `trace_method` are deprecated (FutureWarning): TensorBoard's graph export
  (`TensorBoardLogger(log_graph=True)`) traces the model; nothing for the user to change.
- `isinstance(treespec, LeafSpec)` is deprecated (FutureWarning): Lightning 2.6's own pytree helper.
- Lightning's "Tip: ... try installing litlogger" advertisement, printed on every Trainer start.
"""

from __future__ import annotations

import logging
import warnings

NOISY_WARNINGS = (
    (r"`torch\.jit\.trace(_method)?` is deprecated", FutureWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
NOISY_LOG_PREFIXES = ("💡 Tip: For seamless cloud logging",)
# Lightning routes rank-zero messages through these loggers (fabric's, then pytorch's replaces it).
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISY_LOG_PREFIXES)


def silence_library_noise() -> None:
    """Install the filters above (idempotent)."""
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())
