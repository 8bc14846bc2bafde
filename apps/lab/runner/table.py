"""Aggregation: one table row per variant from its runs (one per fold), and the markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any


def aggregate(values: list[float | None], digits: int) -> str:
    """'x' for one run, 'mean ± std' over folds; '—' when missing."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summarize(name: str, runs: list[dict]) -> dict[str, Any]:
    """One table row for a variant from its runs (one per fold)."""
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        return {
            "variant": name,
            "status": failed[0]["status"],
            "error": failed[0]["error"],
            "stage": failed[0]["stage"],
        }
    get = lambda key: [r.get(key) for r in runs]  # noqa: E731
    reached = get("epochs_to_target")
    params = {r.get("parameters") for r in runs}
    hashes = {(r.get("init_sha256") or "")[:10] for r in runs}
    return {
        "variant": name,
        "status": "ok",
        "test_acc": aggregate(get("test_acc"), 4),
        "best_val_acc": aggregate(get("best_val_acc"), 4),
        "epochs_to_target": "not reached"
        if None in reached
        else aggregate([float(r) for r in reached], 1 if len(runs) > 1 else 0),
        "epoch_time_s": aggregate(get("epoch_time_s"), 2),
        "samples_per_s": aggregate(get("samples_per_s"), 0),
        "peak_memory_mb": aggregate(get("peak_memory_mb"), 0),
        "parameters": f"{params.pop():,}" if len(params) == 1 and None not in params else "—",
        "init": ", ".join(sorted(hashes)) or "—",
    }


COLUMNS = [
    ("variant", "variant"),
    ("test_acc", "test acc"),
    ("best_val_acc", "best val acc"),
    ("epochs_to_target", "epochs to {target}"),
    ("epoch_time_s", "epoch time (s)"),
    ("samples_per_s", "samples/s"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("parameters", "parameters"),
    ("init", "initial weights (sha256)"),
]


def markdown_table(rows: list[dict], target_acc: float) -> str:
    headers = [title.format(target=f"{target_acc:g} val acc") for _, title in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if row["status"] == "ok":
            cells = [str(row[key]) for key, _ in COLUMNS]
        else:
            error = row["error"].replace("|", "\\|")
            cells = [row["variant"], f"**{row['status']}** ({row['stage']}): {error}"] + [""] * (len(COLUMNS) - 2)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_curve(runs: list[dict], tag: str) -> list[float]:
    """Per-epoch mean over folds (up to the shortest run)."""
    curves = [r["curves"][tag] for r in runs if r.get("curves", {}).get(tag)]
    if not curves:
        return []
    return [statistics.fmean(c[i] for c in curves) for i in range(min(len(c) for c in curves))]
