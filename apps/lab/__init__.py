"""`paradis-lab`: run one or more axes of MNIST experiments and write a comparison report for each.

    paradis-lab configs/lab/<axis>.yaml [more lab files] [--jobs N] [--folds K] [--force] [--runs-dir DIR]
                [--isolated] [--workers N] [--storage URL] [--section.key value ...]

A lab file (apps/lab/spec.py) names a base config, the overrides every variant shares, and the
variants: an explicit list, a grid (the product of several dimensions), or a `search:` block (an
Optuna study, apps/lab/search/study.py). Each variant is a real `paradis fit` then `paradis test` with its
own run folder `<runs-dir>/<axis>/<variant>/` (its own TensorBoard run and `metrics.json`), the
same seed and the same data.

By default each run is a child forked from one warm process that has imported everything once
(apps/lab/runner/worker.py); `--jobs N` runs N of them at a time, each with `cores // N` intra-op threads
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
numbers (apps/lab/course/report.py).

The map of apps/lab/:

    __init__.py        this map, and `main`: the `paradis-lab` entry point (`apps.lab:main`), errors as exit codes
    __main__.py        `python -m apps.lab` = `paradis-lab`
    cli.py             the command line: parse, run every lab file's runs in one pool, write the reports
    spec.py            lab files: parsing, grid expansion, the `search:` block as written
    runner/            the grid runner: each variant as `paradis fit` + `paradis test`, and an axis's report
        pool.py        a run's commands, the cache of finished runs, `--jobs N` of them at a time
        worker.py      where a run executes: a child of the warm forkserver, or two fresh `paradis` processes
        warm.py        what the forkserver imports once
        callbacks.py   the two callbacks every run gets: its `metrics.json` and its initial-weights hash
        results.py     one finished run read back: its `metrics.json` and initial-weights hash
        table.py       one row per variant (mean ± std over folds), the markdown table
        report.py      an axis's `report.md`: header, table, figures, commands
        plots.py       the report's figures
    search/            a `search:` block: an Optuna study instead of a fixed list or grid
        space.py       the block checked: budget, objective, sampler, pruner, parameter ranges
        study.py       the study run: workers, trials (each one run by runner/), the objective
        storage.py     where the study lives (SQLite or `--storage URL`), the guard against mixing two searches
        report.py      the search's report: the axis report over the trials, the study, Optuna's plots
        pruning.py     the callback that reports a trial's metric to Optuna and stops it when pruned
    course/            `course.md` and `course.html` over every axis in a lab folder
        axes.py        the axes read back from their `results.json`, the machine, the side-by-side table
        answers.py     what the answers share: finding a question's variants, "not answered" sentences
        questions.py   the course's questions, each answered from the measured numbers
        report.py      `course.md` and the self-contained `course.html`

Why three rooms and two files on top: runner/ is what every lab file stands on (a grid is its runs; a
search runs each trial through it and writes its report with it; the course reads the tables and reports it
left), so it imports neither search/ nor course/, and those two import runner/ and spec.py but not each
other. spec.py stays on top because one lab file chooses between a grid and a search, and cli.py because it
drives all three rooms. (The room is not called `runs/`: .gitignore and ruff's `extend-exclude` skip every
`runs` folder, the run folders' name.) This file imports nothing of the lab at module level: every lab module
(the forkserver's apps.lab.runner.warm, a search's spawned workers) runs it first.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Exit code 0 when every variant finished, 1 when some failed (the report is written anyway), 2 on bad input."""
    from apps.lab.cli import run_lab  # here: every lab module runs this file first (see above)

    try:
        rows = run_lab(sys.argv[1:] if argv is None else list(argv))
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("PARADIS_DEBUG"):
            raise
        print(f"paradis-lab: error: {err}", file=sys.stderr)
        sys.exit(2)
    failed = [row["variant"] for row in rows if row["status"] == "failed"]
    if failed:
        print(f"paradis-lab: {len(failed)} variant(s) failed: {', '.join(failed)}; see the report.", file=sys.stderr)
        sys.exit(1)
