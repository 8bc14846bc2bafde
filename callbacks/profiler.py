"""A no-op profiler that costs nothing per hook, for runs that do not profile.

Lightning wraps every hook it calls (~80 per training step with Paradis' callbacks) in
`trainer.profiler.profile(name)`. The default `PassThroughProfiler` does nothing inside, but its `profile` is a
generator-based context manager: a generator and a context object built, entered and closed each time. For
the 784-128-10 MLP at batch 64 that was ~0.07 ms of a ~1.1 ms step (BENCHMARKS.md). `NoProfiler` returns one
shared `nullcontext` instead. The Trainer's `profiler` argument is Lightning's own extension point for this;
`paradis` uses `NoProfiler` only when `--trainer.profiler` is not set (`simple`, `advanced` and `pytorch`
still work as in Lightning).
"""

from __future__ import annotations

from contextlib import nullcontext

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    def profile(self, action_name: str) -> nullcontext:
        return _NOTHING
