"""Test-only callback: send this process a real signal at a given optimizer step (the SIGTERM a cluster
sends, or the SIGINT of Ctrl-C), so the tests exercise Lightning's and Paradis' own signal handling."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class SignalAt(Callback):
    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step, self.signal_name, self.sent = step, signal_name, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent and trainer.is_global_zero:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))
