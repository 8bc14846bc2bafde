"""The MNIST lab: a tiny lab file run end to end with the real `paradis-lab` and `paradis` processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from apps import lab
from conftest import BIN, ROOT

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


def test_shipped_lab_files_expand_to_their_variants():
    counts = {"activations": 4, "optimizers": 4, "dropout": 2, "grid": 16, "init_batchnorm": 6}
    for axis, count in counts.items():
        spec = lab.load_lab(ROOT / "configs" / "lab" / f"{axis}.yaml")
        assert len(spec.variants) == count, axis
        assert spec.seed is not None
    grid = lab.load_lab(ROOT / "configs" / "lab" / "grid.yaml")
    assert grid.variants[0].name == "1x64_lr0.1_const"
    assert grid.variants[0].args == ["--model.hidden_sizes", "[64]", "--model.lr", "0.1", "--model.scheduler", "none"]
    fit, test = lab.run_commands(grid, grid.variants[0], Path("runs/x"), ["--trainer.max_epochs", "1"], (2, 3))
    assert fit[:2] == ["paradis", "fit"] and test[:2] == ["paradis", "test"]
    assert fit[fit.index("--data.fold") + 1] == "2" and fit[fit.index("--data.folds") + 1] == "3"
    assert lab.aggregate([0.5, 0.7], 2) == "0.60 ± 0.14"


def test_bad_lab_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: configs/mnist.yaml\nvariants:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(SystemExit) as exit_info:
        lab.main([str(bad), "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "variant name(s) a appear more than once" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lab.load_lab(tmp_path / "missing.yaml")


def test_tiny_lab_end_to_end_resumes_and_reports_failures(tmp_path, capsys):
    runs = tmp_path / "lab"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "paradis-lab"), str(TINY), "--runs-dir", str(runs)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    first_elapsed = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: a variant failed, the report is written anyway
    assert "1 variant(s) failed: broken" in proc.stderr
    out = runs / "lab_tiny"
    report = (out / "report.md").read_text()
    for png in ("val_acc.png", "loss.png", "time_memory.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report
    rows = table_rows(report)
    assert set(rows) == {"sgd", "adam", "broken"}
    assert "| sgd |" in proc.stdout  # the table is printed too

    hashes = set()
    for name in ("sgd", "adam"):
        run_dir = out / name
        # The numbers in the table are the ones logged in the run's TensorBoard events.
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
        # The exact commands are in the report.
        assert "paradis fit --config configs/mnist.yaml --seed_everything 7" in report
        assert f"--run_dir {run_dir}" in report
    assert len(hashes) == 1, "every variant must start from the same initial weights"

    broken = rows["broken"]
    assert "failed" in broken["test acc"] and "Unknown activation 'swish'" in broken["test acc"]
    assert not (out / "broken" / "result.json").exists()

    # Second invocation: finished variants are read back, not retrained; the broken one is tried again.
    checkpoints = {name: (out / name / "checkpoints" / "best.ckpt").stat().st_mtime_ns for name in ("sgd", "adam")}
    capsys.readouterr()
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        lab.main([str(TINY), "--runs-dir", str(runs)])
    assert exit_info.value.code == 1
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, read back") == 2 and "broken: FAILED" in printed
    assert {name: (out / name / "checkpoints" / "best.ckpt").stat().st_mtime_ns for name in checkpoints} == checkpoints
    again = table_rows((out / "report.md").read_text())
    assert again["sgd"] == rows["sgd"] and again["adam"] == rows["adam"]
    # 1 paradis process (the broken variant, tried again) instead of 5; the ratio holds on a busy machine too.
    assert elapsed < first_elapsed / 2, f"second invocation took {elapsed:.0f} s vs {first_elapsed:.0f} s: nothing was skipped"
