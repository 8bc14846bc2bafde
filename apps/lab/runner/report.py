"""`report.md` of one lab: header, table, figures and the exact command of every run."""

from __future__ import annotations

import os
import platform
import shlex
from datetime import datetime, timezone
from pathlib import Path

from apps.lab.runner.plots import plot
from apps.lab.runner.table import markdown_table
from apps.lab.spec import Lab


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    from importlib.metadata import version

    return (
        f"{platform.node() or 'this machine'}: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {version('torch')}, lightning {version('lightning')}"
    )


# What `perf/peak_memory_mb` measures on each device (callbacks/speed.py's `peak_memory_mb`), in words: the
# report says it without importing Lightning, which would cost a `paradis-lab` run ~9 s for one sentence.
PEAK_MEMORY = {
    "cuda": "`torch.cuda.max_memory_allocated` over the epoch",
    "cpu": "the tensors one training step keeps (weights, gradients, optimizer state, batch, activations saved for backward)",
}


def memory_kind(results: dict[str, list[dict]]) -> str:
    """What the memory column is: `perf/peak_memory_mb` on the runs' devices."""
    devices = sorted({r.get("device") or "cpu" for runs in results.values() for r in runs if r["status"] == "ok"})
    devices = devices or ["cpu"]
    kinds = dict.fromkeys("cuda" if d.startswith("cuda") else "cpu" for d in devices)  # mps counts as on cpu
    return (
        f"peak memory = `perf/peak_memory_mb` on {' and '.join(devices)} ({'; '.join(PEAK_MEMORY[k] for k in kinds)})"
    )


def header(lab: Lab, argv: list[str], folds: int, jobs_line: str) -> list[str]:
    return [
        f"# MNIST lab: {lab.axis}",
        "",
        lab.description,
        "",
        f"- Lab file: `{lab.path}` — reproduce the whole table with `{shlex.join(['paradis-lab', *argv])}`",
        f"- Machine: {machine_line()}",
        f"- Written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; same seed ({lab.seed}) and data for every variant; "
        + jobs_line,
        *(
            [f"- {folds}-fold cross-validation (`--data.folds {folds}`): each cell is mean ± sample std over the folds"]
            if folds > 1
            else []
        ),
    ]


def commands_section(results: dict[str, list[dict]], out_dir: Path) -> list[str]:
    lines = [
        "## Commands",
        "",
        "Each row can be reproduced alone (from the repository root), with the same numbers:",
        "",
    ]
    for name, runs in results.items():
        failed = next((r for r in runs if r["status"] != "ok"), None)
        lines.append(f"**{name}**" + (f" — {failed['status']}: `{failed['error']}`" if failed else ""))
        lines += ["", "```bash"]
        for run in runs:
            lines += run["commands"]
        lines += ["```", ""]
    lines += ["TensorBoard over all variants:", "", "```bash", f"tensorboard --logdir {out_dir}", "```", ""]
    return lines


def write_report(
    lab: Lab,
    out_dir: Path,
    rows: list[dict],
    results: dict[str, list[dict]],
    argv: list[str],
    folds: int,
    jobs_line: str = "",
    extra_sections: tuple[list[str], ...] = (),
) -> Path:
    plots = plot(results, out_dir)
    lines = header(lab, argv, folds, jobs_line) + [
        "- Columns: test accuracy of the best checkpoint (by val acc); epoch time, samples/s = mean over training epochs "
        f"(validation excluded); {memory_kind(results)}; initial weights = the first characters of a SHA-256 of the "
        "weights before training (equal hashes = same starting point).",
        "",
        markdown_table(rows, lab.target_acc),
        "",
    ]
    for title, filename in plots:
        lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    for section in extra_sections:
        lines += section
    lines += commands_section(results, out_dir)
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
