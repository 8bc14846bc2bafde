"""The one place that silences library messages that are not the user's business.

Called once at start-up by the entry points (`paradis`, and any app that trains). Each filter is
narrow (one message, one category), so every other warning still reaches the user:

- `torch.jit.trace` / `trace_method` are deprecated (FutureWarning): TensorBoard's graph export
  (`TensorBoardLogger(log_graph=True)`) traces the model; nothing for the user to change.
- `isinstance(treespec, LeafSpec)` is deprecated (FutureWarning): Lightning 2.6's own pytree helper.
- jsonargparse 4.49's deprecations of the calls Lightning 2.6's own `LightningCLI` makes (`skip_none`,
  `add_instantiator`, `instantiate_classes`): only the warnings attributed to `lightning.pytorch.cli`.
- torchmetrics' "This property will be removed in 2.0.0. Use `Metric.updated_called`": Lightning's logger
  connector reads the old property.
- transformers' "`is_gradient_checkpointing` is deprecated": peft reads it when it wraps a model.
- numpy 2's "`__array__` implementation doesn't accept a copy keyword": matplotlib, when torchmetrics' own
  confusion-matrix plot hands it a tensor.
- torch's "'set_vital' is deprecated" (UserWarning): torchdata 0.11's `StatefulDataLoader` calls it whenever a
  loader is made (the text and lazily read photo loaders).
- Lightning's "Tip: ... try installing litlogger" advertisement, printed on every Trainer start.
"""

from __future__ import annotations

import logging
import warnings

NOISY_WARNINGS = (  # (message, category, module the warning is attributed to)
    (r"`torch\.jit\.trace(_method)?` is deprecated", FutureWarning, ""),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    (
        r"\s*(By default only one JsonargparseDeprecationWarning|.* was deprecated in v4\.)",
        Warning,
        r"lightning\.pytorch\.cli",
    ),
    (r"This property will be removed in 2\.0\.0\. Use `Metric\.updated_called`", Warning, ""),
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning, ""),
    (r"__array__ implementation doesn't accept a copy keyword", DeprecationWarning, r"matplotlib\."),
    (r"'set_vital' is deprecated", UserWarning, r"torchdata\."),
)
NOISY_LOG_PREFIXES = ("💡 Tip: For seamless cloud logging",)
# Lightning routes rank-zero messages through these loggers (fabric's, then pytorch's replaces it).
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISY_LOG_PREFIXES)


def silence_library_noise() -> None:
    """Install the filters above (idempotent)."""
    for message, category, module in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())
