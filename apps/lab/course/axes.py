"""The course: every axis found in a lab folder, read back from its `results.json` (apps/lab/cli.py),
the machine it ran on and the side-by-side numbers that apps/lab/course/report.py writes out.

An axis is a sub-folder `<runs-dir>/<axis>/` holding `results.json` and `report.md` (its figures are the
PNGs that report.md shows). Nothing is rerun here: the course is built from what the runs left.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

from apps.lab.runner.report import cpu_model
from apps.lab.runner.table import mean_curve

RESULTS_FILE = "results.json"
FIGURE = re.compile(r"^!\[(?P<title>[^\]]+)\]\((?P<file>[^)]+\.png)\)$", re.MULTILINE)


@dataclass
class Axis:
    """One lab axis as its last `paradis-lab` run left it."""

    name: str
    folder: Path
    lab: str
    description: str
    argv: list[str]  # the `paradis-lab` arguments that produced this axis
    target_acc: float | None
    folds: int
    rows: list[dict]  # apps.lab.runner.table.summarize rows (formatted cells)
    runs: dict[str, list[dict]]  # variant -> its runs (one per fold)
    search: bool = False  # an Optuna study's trials rather than a fixed list or grid

    @property
    def variants(self) -> list[str]:
        return list(self.runs)

    def ok(self, variant: str) -> bool:
        return bool(self.runs.get(variant)) and all(r["status"] == "ok" for r in self.runs[variant])

    def error(self, variant: str) -> str:
        failed = next((r for r in self.runs.get(variant, []) if r["status"] != "ok"), None)
        return f"{failed['status']} in {failed.get('stage', '?')}: {failed.get('error', '')}" if failed else ""

    def value(self, variant: str, key: str) -> float | None:
        """Mean over the variant's folds of a numeric result (None when failed or missing)."""
        if not self.ok(variant):
            return None
        values = [r.get(key) for r in self.runs[variant]]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            return None
        return statistics.fmean(values)

    def spread(self, variant: str, key: str) -> float | None:
        """Sample std over folds (None with one fold)."""
        values = [r.get(key) for r in self.runs.get(variant, []) if r.get(key) is not None]
        return statistics.stdev(values) if len(values) > 1 and self.ok(variant) else None

    def curve(self, variant: str, tag: str) -> list[float]:
        return mean_curve(self.runs[variant], tag) if self.ok(variant) else []

    def options(self, variant: str) -> dict[str, str]:
        """`--section.key value` options of the variant's `paradis fit` command (the last one of a key wins)."""
        return command_options(self.runs[variant][0]["commands"][0]) if self.runs.get(variant) else {}

    def varies(self, option: str) -> bool:
        return len({self.options(v).get(option) for v in self.variants}) > 1

    def with_option(self, option: str, test) -> list[str]:
        """Variants whose `option` value satisfies `test(value)` (a missing option never does)."""
        out = []
        for v in self.variants:
            value = self.options(v).get(option)
            if value is not None and test(value):
                out.append(v)
        return out

    def figures(self) -> list[tuple[str, Path]]:
        """(title, png path) of the figures the axis's report.md shows."""
        report = self.folder / "report.md"
        if not report.exists():
            return []
        found = [(m["title"], self.folder / m["file"]) for m in FIGURE.finditer(report.read_text())]
        return [(title, path) for title, path in found if path.exists()]


def command_options(command: str) -> dict[str, str]:
    words = shlex.split(command)
    words = words[words.index("paradis") + 2 :] if "paradis" in words else words
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and "+=" not in word:
            if "=" in word:
                key, value = word[2:].split("=", 1)
                options[key] = value
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                options[word[2:]] = words[i + 1]
                i += 1
        i += 1
    return options


def number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def read_axis(folder: Path) -> Axis | None:
    try:
        data = json.loads((folder / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        return None
    lab = str(data.get("lab", ""))
    description = data.get("description")
    target = data.get("target_acc")
    if description is None or target is None:  # results.json written before these were kept: ask the lab file
        try:
            from apps.lab.spec import load_lab

            spec = load_lab(lab)
            description = spec.description if description is None else description
            target = spec.target_acc if target is None else target
        except (ValueError, OSError):
            pass
    runs = data["runs"]
    folds = max((len(r) for r in runs.values()), default=1)
    return Axis(
        folder.name,
        folder,
        lab,
        description or "",
        list(data.get("argv") or [lab]),
        target,
        int(data.get("folds") or folds),
        list(data.get("rows") or []),
        runs,
        bool(data.get("search")),
    )


def collect(runs_dir: Path, order: list[str] = ()) -> list[Axis]:
    """Every axis under `runs_dir`: those named in `order` first (in that order), then the others by name."""
    folders = (
        sorted(p for p in Path(runs_dir).iterdir() if (p / RESULTS_FILE).is_file()) if Path(runs_dir).is_dir() else []
    )
    rank = {name: i for i, name in enumerate(order)}
    folders.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
    return [axis for axis in map(read_axis, folders) if axis is not None]


def hardware(axes: list[Axis]) -> list[str]:
    """The machine (CPU, cores, versions, GPU availability as the course's step 1 asks) and the runs' devices."""
    from importlib.metadata import version

    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpu = f"available: {', '.join(names)} (`torch.cuda.is_available()` is True, {len(names)} device(s))"
    else:
        gpu = "not available (`torch.cuda.is_available()` is False): CPU only"
    devices = sorted(
        {r.get("device") or "cpu" for a in axes for runs in a.runs.values() for r in runs if r["status"] == "ok"}
    )
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores ({platform.node() or 'this machine'}, {platform.system()} {platform.release()})",
        f"Software: Python {platform.python_version()}, torch {torch.__version__}, lightning {version('lightning')}",
        f"GPU: {gpu}",
        f"The runs trained on: {', '.join(devices) or 'no finished run'}",
    ]


def best_overall(axes: list[Axis]) -> tuple[Axis, str, float] | None:
    scored = [(a, v, a.value(v, "test_acc")) for a in axes for v in a.variants]
    scored = [s for s in scored if s[2] is not None]
    return max(scored, key=lambda s: s[2]) if scored else None


def shared_command(axes: list[Axis]) -> str | None:
    """One `paradis-lab` command for every axis when they were run with the same other arguments."""
    rests = {tuple(a.argv[1:]) for a in axes}
    if len(rests) != 1 or not axes:
        return None
    return shlex.join(["paradis-lab", *[a.argv[0] for a in axes], *rests.pop()])


def cell(row: dict, key: str) -> str:
    return str(row.get(key, "—")) if row.get("status") == "ok" else ""


TABLE = [
    ("variant", "variant"),
    ("test_acc", "test acc"),
    ("epochs_to_target", "epochs to target"),
    ("epoch_time_s", "epoch time (s)"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("parameters", "parameters"),
]


def table(axes: list[Axis]) -> tuple[list[str], list[tuple[Axis, list[list[str]]]]]:
    """Headers and, per axis, one row of cells per variant (a failed variant: its error in the test acc cell)."""
    best = best_overall(axes)
    groups = []
    for axis in axes:
        rows = []
        for row in axis.rows:
            cells = [cell(row, key) for key, _ in TABLE]
            cells[0] = row["variant"]
            if row.get("status") != "ok":
                cells[1] = f"{row.get('status')} ({row.get('stage')}): {row.get('error')}"
            elif best and best[0] is axis and best[1] == row["variant"]:
                cells[0] = f"**{row['variant']}** (best)"
            rows.append(cells)
        groups.append((axis, rows))
    return [title for _, title in TABLE], groups
