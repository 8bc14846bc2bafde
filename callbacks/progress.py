"""A tqdm progress bar that redraws by time, not on every batch.

Lightning's `TQDMProgressBar` redraws every `refresh_rate` batches, and redraws twice (count, then the
metrics) by calling `tqdm.refresh()` itself, which bypasses tqdm's own `mininterval`. At refresh rate 1
that is two terminal writes per batch: for the 784-128-10 MLP at batch 64 the bar alone cost more than the
training step (BENCHMARKS.md), and a log file piped from `paradis fit` got two lines per batch. A fixed
larger refresh rate would freeze the bar of a slow task (a DDPM step can take seconds). `TimedProgressBar`
keeps `refresh_rate` and also waits `min_interval` seconds between redraws; the last batch of a loop is
always drawn.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class TimedProgressBar(TQDMProgressBar):
    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 min_interval: float = 0.2) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        if min_interval < 0:
            raise ValueError(f"The progress bar's min_interval must be zero or more seconds (0: redraw every "
                             f"refresh_rate batches), got {min_interval}.")
        self.min_interval = min_interval
        self._last_draw = float("-inf")

    def _should_update(self, current: int, total: int) -> bool:
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False
