"""A no-op profiler that costs nothing per hook, used by `paradis` when `--trainer.profiler` is not set.

Lightning wraps every hook it calls (~80 per training step) in `trainer.profiler.profile(name)`; the default
`PassThroughProfiler`'s is a generator-based context manager, built and entered each time: ~0.07 ms of a ~1.1 ms
MLP step (BENCHMARKS.md). `NoProfiler` returns one shared `nullcontext` instead.
"""

from __future__ import annotations

from contextlib import nullcontext

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    def profile(self, action_name: str) -> nullcontext:
        return _NOTHING
