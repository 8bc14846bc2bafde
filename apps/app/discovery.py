"""Finding checkpoints, once per app start: run folders under the runs dir (any depth) and --checkpoint paths,
grouped by the task their checkpoint holds and labelled with the run, its date and main metric."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from apps.app.tasks import TASKS, task_for
from paradis.checkpoint import check_class, read_checkpoint


@dataclass(frozen=True)
class Entry:
    path: str
    task: str
    label: str


@dataclass
class Found:
    """What discovery found: {task key: [Entry, ...] newest run first, best before last} and problem sentences."""

    entries: dict[str, list[Entry]]
    problems: list[str]
    where: str  # where the app looked, for "no checkpoint found in ..." messages


def task_of(checkpoint: dict, path: Path) -> str:
    """The task key of the checkpoint's class, or one sentence naming what it holds instead."""
    found = check_class(checkpoint, path, [t.class_path for t in TASKS], hint="pass a .ckpt written by `paradis fit`.")
    return task_for(found).key


def describe(checkpoint: dict, path: Path, run_name: str) -> str:
    """'<run> · best · val/acc 0.9731 · epoch 4 · 2026-11-25 23:05'."""
    parts = [run_name, path.stem]
    for _key, state in checkpoint.get("callbacks", {}).items():
        if isinstance(state, dict) and "best_model_score" in state:  # a ModelCheckpoint (or subclass) state
            score = state.get("current_score", state.get("best_model_score"))
            if score is not None:
                parts.append(f"{state.get('monitor')} {float(score):.4f}")
                break
    if "epoch" in checkpoint:
        parts.append(f"epoch {checkpoint['epoch']}")
    parts.append(datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M"))
    return " · ".join(parts)


def candidates(runs: Path | None, checkpoints: list[str]) -> list[tuple[Path, str]]:
    """(checkpoint path, run name): best then last of each run folder, newest run first, then the given paths."""
    found: list[tuple[Path, str]] = []
    if runs is not None and runs.is_dir():
        run_dirs = sorted((c.parent for c in runs.rglob("config.yaml")), key=lambda d: d.stat().st_mtime, reverse=True)
        for run in run_dirs:
            for name in ("best.ckpt", "last.ckpt"):
                if (run / "checkpoints" / name).is_file():
                    found.append((run / "checkpoints" / name, str(run.relative_to(runs)) if run != runs else run.name))
    for path in map(Path, checkpoints):  # named by their run folder when they sit in one
        found.append((path, str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)))
    return found


def discover(runs_dir: str | Path | None, checkpoints: list[str] = ()) -> Found:
    """Every checkpoint the app offers, read cheaply (memory-mapped, `weights_only`)."""
    entries: dict[str, list[Entry]] = {task.key: [] for task in TASKS}
    problems: list[str] = []
    seen: set[Path] = set()
    for path, run_name in candidates(Path(runs_dir) if runs_dir else None, list(checkpoints)):
        if path.resolve() in seen:  # a --checkpoint inside the runs dir
            continue
        seen.add(path.resolve())
        try:
            checkpoint = read_checkpoint(path, mmap=True)
            task = task_of(checkpoint, path)
            label = describe(checkpoint, path, run_name)
        except (ValueError, FileNotFoundError) as err:
            problems.append(str(err))
            continue
        entries[task].append(Entry(str(path.resolve()), task, label))
    where = " or ".join(
        filter(None, [f"`{runs_dir}`" if runs_dir else "", "--checkpoint paths" if checkpoints else ""])
    )
    return Found(entries, problems, where or "`runs`")
