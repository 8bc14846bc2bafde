"""The MNIST lab: a tiny lab file run end to end with the real `paradis-lab` and `paradis` processes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import BIN, ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from apps.lab import main
from apps.lab.runner.pool import run_commands
from apps.lab.runner.table import aggregate
from apps.lab.spec import load_lab

TINY = ROOT / "tests" / "configs" / "lab_tiny.yaml"


def scalars(events: Path) -> dict[str, list]:
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def table_rows(report: str) -> dict[str, dict[str, str]]:
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_the_lab_processes_never_import_torch(tmp_path):
    """`paradis-lab` and its search workers plan, start, read back and report runs without torch or Lightning:
    the warm forkserver imports them once for the runs (importing Lightning costs a process ~9 s here)."""
    code = f"""
import sys
from pathlib import Path
import apps.lab.cli, apps.lab.runner.pool, apps.lab.search.study, apps.lab.search.report, apps.lab.course.report
from apps.lab.runner.report import memory_kind
from apps.lab.runner.results import run_metrics
run_metrics(Path({str(tmp_path)!r}), 0.9)
memory_kind({{}})
print(sorted(m for m in ("torch", "lightning") if m in sys.modules))
"""
    out = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_shipped_lab_files_expand_to_their_variants():
    counts = {"activations": 4, "optimizers": 4, "dropout": 2, "grid": 16, "init_batchnorm": 6}
    for axis, count in counts.items():
        spec = load_lab(ROOT / "configs" / "lab" / f"{axis}.yaml")
        assert len(spec.variants) == count, axis
        assert spec.seed is not None
    grid = load_lab(ROOT / "configs" / "lab" / "grid.yaml")
    assert grid.variants[0].name == "1x64_lr0.1_const"
    assert grid.variants[0].args == ["--model.hidden_sizes", "[64]", "--model.lr", "0.1", "--model.scheduler", "none"]
    fit, test = run_commands(grid, grid.variants[0], Path("runs/x"), ["--trainer.max_epochs", "1"], (2, 3))
    assert fit[:2] == ["paradis", "fit"] and test[:2] == ["paradis", "test"]
    # The callback is named by a path the child process can import (not `__main__.InitialWeights`).
    assert "--trainer.callbacks+=apps.lab.runner.callbacks.InitialWeights" in fit
    assert fit[fit.index("--data.fold") + 1] == "2" and fit[fit.index("--data.folds") + 1] == "3"
    assert aggregate([0.5, 0.7], 2) == "0.60 ± 0.14"


def test_bad_lab_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: configs/mnist.yaml\nvariants:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad), "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "variant name(s) a appear more than once" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lab(tmp_path / "missing.yaml")


def run_lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "paradis-lab"), str(TINY), *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )


def test_tiny_lab_end_to_end_resumes_and_reports_failures(tmp_path, capsys):
    runs = tmp_path / "lab"
    loud = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # the runs' warnings as a user sees them
    proc = run_lab("--runs-dir", str(runs), "--jobs", "2", env=loud)
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: a variant failed, the report is written anyway
    assert "1 variant(s) failed: broken" in proc.stderr
    out = runs / "lab_tiny"
    report = (out / "report.md").read_text()
    for png in ("val_acc.png", "loss.png", "time_memory.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report
    rows = table_rows(report)
    assert set(rows) == {"sgd", "adam", "broken"}
    assert "| sgd |" in proc.stdout  # the table is printed too
    assert "peak memory = `perf/peak_memory_mb` on cpu" in report

    hashes = set()
    for name in ("sgd", "adam"):
        run_dir = out / name
        # The numbers in the table (read from the run's metrics.json) are the ones logged in its TensorBoard events.
        fit_events, test_events = sorted(run_dir.glob("events.out.tfevents.*"))
        fit, test = scalars(fit_events), scalars(test_events)
        row = rows[name]
        assert row["test acc"] == f"{test['test/acc'][-1].value:.4f}"
        assert row["best val acc"] == f"{max(e.value for e in fit['val/acc']):.4f}"
        epoch_times = [e.value for e in fit["perf/epoch_time_s"]]
        assert len(epoch_times) == 2
        assert row["epoch time (s)"] == f"{sum(epoch_times) / 2:.2f}"
        assert row["peak memory (MB)"] == f"{max(e.value for e in fit['perf/peak_memory_mb']):.0f}"
        real_val = [e.value for e in fit["val/acc"] if e.step > 0 or e.value > 0]  # minus the hparams placeholder
        reached = next(i for i, acc in enumerate(real_val, 1) if acc >= 0.3)
        assert row["epochs to 0.3 val acc"] == str(reached)
        state = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        assert row["parameters"] == f"{sum(t.numel() for t in state.values()):,}" == "25,450"
        hashes.add(row["initial weights (sha256)"])
        # The exact commands are in the report, with the intra-op thread count that --jobs 2 gives on 2 cores.
        assert "paradis fit --config configs/mnist.yaml --seed_everything 7" in report
        assert f"--run_dir {run_dir}" in report
        for log in ("fit.log", "test.log"):  # a warm run's log reads like a `paradis` console
            assert "LightningCLI's args parameter" not in (run_dir / log).read_text()
    assert len(hashes) == 1, "every variant must start from the same initial weights"

    broken = rows["broken"]
    assert "failed" in broken["test acc"] and "Unknown activation 'swish'" in broken["test acc"]
    assert not (out / "broken" / "result.json").exists()

    # Second invocation: finished variants are read back, not retrained (their checkpoints are untouched);
    # the broken one is tried again.
    checkpoints = {name: (out / name / "checkpoints" / "best.ckpt").stat().st_mtime_ns for name in ("sgd", "adam")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(TINY), "--runs-dir", str(runs), "--jobs", "2"])
    assert exit_info.value.code == 1
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, read back") == 2 and "broken: FAILED" in printed
    assert {name: (out / name / "checkpoints" / "best.ckpt").stat().st_mtime_ns for name in checkpoints} == checkpoints
    again = table_rows((out / "report.md").read_text())
    assert again["sgd"] == rows["sgd"] and again["adam"] == rows["adam"]

    # Same numbers as running the variant alone: the report's two commands, each a fresh `paradis` process.
    result = json.loads((out / "adam" / "result.json").read_text())
    alone = tmp_path / "alone"
    for command in result["commands"]:
        command = command.replace(f"--run_dir {out / 'adam'}", f"--run_dir {alone}")
        env_part, _, argv = command.partition(" paradis ")
        env = {**os.environ, **dict([env_part.split("=")])}
        subprocess.run(
            [str(BIN / "paradis"), *shlex.split(argv)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
        )
    lab_metrics = json.loads((out / "adam" / "metrics.json").read_text())
    alone_metrics = json.loads((alone / "metrics.json").read_text())
    exact = ("train/loss_epoch", "val/loss", "val/acc")
    assert [{k: e[k] for k in exact} for e in alone_metrics["epochs"]] == [
        {k: e[k] for k in exact} for e in lab_metrics["epochs"]
    ]
    assert alone_metrics["test"] == lab_metrics["test"]


def test_folds_end_to_end(tmp_path):
    runs = tmp_path / "lab"
    proc = run_lab("--runs-dir", str(runs), "--folds", "2", "--jobs", "2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = runs / "lab_tiny"
    rows = table_rows((out / "report.md").read_text())
    assert "2-fold cross-validation" in (out / "report.md").read_text()
    for name in ("sgd", "adam"):
        folds = [json.loads((out / name / f"fold{i}" / "result.json").read_text()) for i in range(2)]
        assert all(f"--data.folds 2 --data.fold {i}" in folds[i]["commands"][0] for i in range(2))
        accs = [f["test_acc"] for f in folds]
        assert rows[name]["test acc"] == aggregate(accs, 4) and "±" in rows[name]["test acc"]
        val = [max(f["curves"]["val/acc"]) for f in folds]
        assert val[0] != val[1], "each fold validates on its own held-out part"
    assert "failed" in rows["broken"]["test acc"]
