"""Runs of a lab: their commands, the cache of finished ones, and `--jobs N` of them at a time.

Each run is a real `paradis fit` then `paradis test` with its own run folder. A finished run leaves
`result.json` and is read back next time unless its commands or the base config changed, or
`--force` is given; an unfinished one is cleaned and run again. A failed run is reported with its
one-line error while the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from apps.lab.runner.results import run_metrics
from apps.lab.runner.worker import CPU_FILE, FAILED_CODE, STAGES, launch
from apps.lab.spec import Lab, Variant

RESULT_FILE = "result.json"
FIT_CALLBACKS = ("apps.lab.runner.callbacks.InitialWeights", "apps.lab.runner.callbacks.MetricsFile")
TEST_CALLBACKS = ("apps.lab.runner.callbacks.MetricsFile",)
# Before the lab file's own args (which may override it): a run's output goes to a log file, where a
# progress bar is noise, and its per-step refresh costs ~5 % of an MNIST epoch (cProfile: 0.7 s of 15 s).
QUIET = ["--trainer.enable_progress_bar", "false"]


@dataclass
class Run:
    """One fit + test of one variant (and fold)."""

    lab: Lab
    variant: Variant
    run_dir: Path
    fold: tuple[int, int] | None
    threads: int
    commands: list[list[str]]
    hidden_args: list[str] = field(
        default_factory=list
    )  # added to `fit` but not shown (e.g. a search's pruning callback)

    @property
    def shown(self) -> list[str]:
        return [f"OMP_NUM_THREADS={self.threads} " + shlex.join(c) for c in self.commands]

    @property
    def label(self) -> str:
        return self.variant.name + (f" fold {self.fold[0]}" if self.fold else "")


def run_commands(
    lab: Lab, variant: Variant, run_dir: Path, extra: list[str], fold: tuple[int, int] | None
) -> list[list[str]]:
    """The `paradis fit` and `paradis test` argv of one run."""
    args = [a for c in lab.base for a in ("--config", c)]
    if lab.seed is not None:
        args += ["--seed_everything", str(lab.seed)]
    args += QUIET + lab.args + variant.args + extra
    if fold is not None:
        args += ["--data.folds", str(fold[1]), "--data.fold", str(fold[0])]
    args += ["--run_dir", str(run_dir)]
    fit = ["paradis", "fit", *args, *(f"--trainer.callbacks+={c}" for c in FIT_CALLBACKS)]
    test = ["paradis", "test", *args, *(f"--trainer.callbacks+={c}" for c in TEST_CALLBACKS)]
    return [fit, test]


def plan(lab: Lab, variant: Variant, run_dir: Path, extra: list[str], fold, threads: int) -> Run:
    return Run(lab, variant, run_dir, fold, threads, run_commands(lab, variant, run_dir, extra, fold))


def base_sha256(lab: Lab) -> str:
    return hashlib.sha256(b"".join(Path(c).read_bytes() for c in lab.base)).hexdigest()


def error_line(output: str, returncode: int) -> str:
    """The one-line reason a run failed: the `paradis: error:` line (the CLI reduces a module's config
    error to its own sentence), else the last line of its output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = next((line for line in lines if re.match(r"^(paradis: )?error:", line)), None)
    return (line or (lines[-1] if lines else f"exit code {returncode}"))[:300]


def clean_run_dir(run_dir: Path) -> None:
    """Remove what a previous (unfinished or forced) run left, keeping sub-folders such as fold runs."""
    if not run_dir.is_dir():
        return
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for item in run_dir.iterdir():
        if item.is_file():
            item.unlink()


def cached_result(run: Run, force: bool) -> tuple[dict | None, bool]:
    """(the result of a finished earlier run with the same commands and base config, whether one was stale)."""
    result_file = run.run_dir / RESULT_FILE
    if not result_file.exists() or force:
        return None, False
    result = json.loads(result_file.read_text())
    if (
        result.get("commands") == run.shown
        and result.get("base_sha256") == base_sha256(run.lab)
        and result.get("status") == "ok"
    ):
        # Read the numbers back from the run's metrics (the target may have changed in the lab file).
        result.update(run_metrics(run.run_dir, run.lab.target_acc), target_acc=run.lab.target_acc, skipped=True)
        return result, False
    return None, True


def finish(run: Run, exitcode: int, wall_time_s: float) -> dict[str, Any]:
    """The result record of a run whose child exited with `exitcode`; written to result.json when ok."""
    result: dict[str, Any] = {
        "variant": run.variant.name,
        "fold": run.fold and run.fold[0],
        "commands": run.shown,
        "base_sha256": base_sha256(run.lab),
        "run_dir": str(run.run_dir),
        "wall_time_s": wall_time_s,
    }
    cpu_file = run.run_dir / CPU_FILE
    if cpu_file.exists():  # the run's own CPU time (user + system, its subprocesses included)
        result["cpu_time_s"] = sum(json.loads(cpu_file.read_text()).values())
    if exitcode != 0:
        index = exitcode - FAILED_CODE if FAILED_CODE <= exitcode < FAILED_CODE + len(STAGES) else 0
        stage = STAGES[index]
        log_file = run.run_dir / f"{stage}.log"
        output = log_file.read_text(errors="replace") if log_file.exists() else ""
        result.update(status="failed", stage=stage, error=error_line(output, exitcode), skipped=False)
        return result  # not written: an unfinished variant is run again next time
    result.update(status="ok", **run_metrics(run.run_dir, run.lab.target_acc), target_acc=run.lab.target_acc)
    (run.run_dir / RESULT_FILE).write_text(json.dumps(result, indent=1))
    result["skipped"] = False
    return result


def start(run: Run, isolated: bool, ctx) -> Any:
    clean_run_dir(run.run_dir)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    commands = [list(c) for c in run.commands]
    commands[0] += run.hidden_args
    return launch(commands, run.run_dir, run.threads, isolated, ctx)


def execute(
    runs: list[Run], jobs: int, force: bool, isolated: bool, ctx, report: Callable[[Run, dict], None]
) -> list[dict]:
    """Every run (cached ones read back), `jobs` at a time; `report(run, result)` as each ends. Results in order."""
    results: list[dict | None] = [None] * len(runs)
    pending: deque[int] = deque()
    for i, run in enumerate(runs):
        result, stale = cached_result(run, force)
        if result is not None:
            results[i] = result
            report(run, result)
        else:
            run.stale = stale  # type: ignore[attr-defined]
            pending.append(i)
    running: dict[Any, tuple[int, Any, float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            i = pending.popleft()
            process = start(runs[i], isolated, ctx)
            running[process.sentinel] = (i, process, time.perf_counter())
        for sentinel in wait(list(running)):
            i, process, started = running.pop(sentinel)
            process.join()
            results[i] = finish(runs[i], process.exitcode, time.perf_counter() - started)
            report(runs[i], results[i])
    return [r for r in results if r is not None]


def default_threads(jobs: int) -> int:
    """Intra-op threads per run: the cores shared by the parallel runs (one each when jobs >= cores)."""
    return max(1, (os.cpu_count() or 1) // jobs)
