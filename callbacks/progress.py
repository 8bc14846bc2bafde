"""A tqdm progress bar that redraws by time, not on every batch.

Lightning's `TQDMProgressBar` calls `tqdm.refresh()` itself every `refresh_rate` batches (twice: count, then
metrics), bypassing tqdm's `mininterval`: for the 784-128-10 MLP the bar cost more than the training step
(BENCHMARKS.md), and a piped log got two lines per batch, while a larger fixed refresh rate would freeze the
bar of a slow DDPM step. `TimedProgressBar` also waits `min_interval` seconds between redraws; a loop's last
batch is always drawn, also when it stops early (`max_steps`, early stopping, an iterable without a length).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from paradis.lightning_internals import ThrottledTQDMProgressBar


class TimedProgressBar(ThrottledTQDMProgressBar):
    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 min_interval: float = 0.2) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        if min_interval < 0:
            raise ValueError(f"The progress bar's min_interval must be zero or more seconds (0: redraw every "
                             f"refresh_rate batches), got {min_interval}.")
        self.min_interval = min_interval
        self._last_draw = float("-inf")
        self._done: dict[str, int] = {}  # batches finished in the running loop of each bar

    def should_draw(self, current: int, total: int) -> bool:
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False

    def bar(self, stage: str) -> Optional[Any]:
        """The tqdm bar of "train", "val", "test" or "predict" (None when it does not exist)."""
        try:
            return getattr(self, f"{stage}_progress_bar")
        except TypeError:  # Lightning's property raises while the bar is not set
            return None

    def _draw_last(self, stage: str) -> None:
        n, bar = self._done.pop(stage, None), self.bar(stage)
        if bar is not None and n is not None and not bar.disable and bar.n != n:
            bar.n = n
            bar.refresh()

    # the batches each loop has finished ...
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._done["train"] = batch_idx + 1

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._done["val"] = batch_idx + 1

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._done["test"] = batch_idx + 1

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._done["predict"] = batch_idx + 1

    # ... are on the bar when the loop ends
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._draw_last("train")
        super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._draw_last("val")
        super().on_validation_end(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._draw_last("test")
        super().on_test_end(trainer, pl_module)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._draw_last("predict")
        super().on_predict_end(trainer, pl_module)

    # an error ends the run: its message starts on a line of its own, not glued to a bar
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        for bar in map(self.bar, ("val", "test", "predict", "train")):
            if bar is not None and not bar.disable:
                bar.leave = True  # close() then ends the bar's line instead of erasing it
                bar.close()
