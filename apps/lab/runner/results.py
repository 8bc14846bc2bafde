"""Reading one finished run back: its `metrics.json` (runner/callbacks.py) and initial-weights hash."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

# Per-epoch series in the report, and the one test metric.
SERIES = ("train/loss_epoch", "val/loss", "val/acc", "perf/epoch_time_s", "perf/samples_per_s", "perf/peak_memory_mb")
TEST_METRIC = "test/acc"
# The files runner/callbacks.py writes into each run folder. Named here, so that reading a result does not
# import Lightning (~9 s of a `paradis-lab` process that otherwise never needs it).
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "initial_weights.json"


def read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def run_metrics(run_dir: Path, target_acc: float) -> dict[str, Any]:
    """Per-epoch curves and summary numbers of one run, from its metrics file."""
    metrics = read_metrics(run_dir)
    epochs = metrics.get("epochs", [])
    curves = {tag: [e[tag] for e in epochs if tag in e] for tag in SERIES}
    val_acc = curves["val/acc"]
    reached = next((epoch for epoch, acc in enumerate(val_acc, 1) if acc >= target_acc), None)
    weights_file = run_dir / WEIGHTS_FILE
    weights = json.loads(weights_file.read_text()) if weights_file.exists() else {}
    mean = lambda xs: statistics.fmean(xs) if xs else math.nan  # noqa: E731
    memory = curves["perf/peak_memory_mb"]
    return {
        "test_acc": metrics.get("test", {}).get(TEST_METRIC, math.nan),
        "best_val_acc": max(val_acc) if val_acc else math.nan,
        "final_val_acc": val_acc[-1] if val_acc else math.nan,
        "epochs": len(val_acc),
        "epochs_to_target": reached,
        "epoch_time_s": mean(curves["perf/epoch_time_s"]),
        "samples_per_s": mean(curves["perf/samples_per_s"]),
        "peak_memory_mb": max(memory) if memory else math.nan,
        "device": metrics.get("device"),
        "parameters": weights.get("parameters"),
        "init_sha256": weights.get("sha256"),
        "curves": curves,
    }
