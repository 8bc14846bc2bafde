"""`paradis-lab`: run one or more axes of MNIST experiments and write a comparison report for each.

    paradis-lab configs/lab/<axis>.yaml [more lab files] [--jobs N] [--folds K] [--force] [--runs-dir DIR]
                [--isolated] [--workers N] [--storage URL] [--section.key value ...]

A lab file (apps/lab/spec.py) names a base config, the overrides every variant shares, and the
variants: an explicit list, a grid (the product of several dimensions), or a `search:` block (an
Optuna study, apps/lab/search.py). Each variant is a real `paradis fit` then `paradis test` with its
own run folder `<runs-dir>/<axis>/<variant>/` (its own TensorBoard run and `metrics.json`), the
same seed and the same data.

By default each run is a child forked from one warm process that has imported everything once
(apps/lab/worker.py); `--jobs N` runs N of them at a time, each with `cores // N` intra-op threads
(at least one). The thread count is part of each run's shown command (`OMP_NUM_THREADS=T paradis
fit ...`) because it changes the last bits of float sums: running that command alone gives the same
numbers. `--isolated` runs the shown commands as fresh processes instead. A finished variant is
read back next time unless its command or the base config changed, or `--force` is given. A variant
that fails is reported with its error while the others go on. Arguments after the lab file that
`paradis-lab` does not know (e.g. `--trainer.max_epochs 2`) are added to every command. `--folds K`
runs each variant K times with `--data.folds K --data.fold i` and reports mean ± std. Exit code 1
when a variant failed (the report is still written), 2 on a bad lab file.

Afterwards `<runs-dir>/<axis>/report.md` holds the table, the plots and the exact command of every
run; the table is also printed. When several lab files run (or `<runs-dir>/course.md` already exists),
`<runs-dir>/course.md` and a self-contained `course.html` cover every axis found in the lab folder: the
machine, one side-by-side table, each axis's plots and the course's questions answered from the
numbers (apps/lab/course_report.py).
"""

from __future__ import annotations

from apps.lab.cli import main, parse_args, run_lab
from apps.lab.runner import run_commands
from apps.lab.spec import Lab, Variant, load_lab
from apps.lab.table import aggregate

__all__ = ["Lab", "Variant", "aggregate", "load_lab", "main", "parse_args", "run_commands", "run_lab"]
