"""The course report (`course.md` + `course.html` over every axis of a lab folder): built from tiny real runs
of several lab files, resumed with one more, opened in headless Chromium, and its sentences checked against
fabricated numbers (they must flip when the numbers do)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from browser import LAUNCH_ARGS, chromium
from conftest import BIN, ROOT

from apps.lab.course.axes import collect
from apps.lab.course.questions import dropout, momentum, relu_fastest, tanh_vs_sigmoid
from apps.lab.course.report import write_course
from apps.lab.runner.table import summarize

TINY = (
    "--trainer.max_epochs 2 --trainer.limit_train_batches 3 --trainer.limit_val_batches 1 --trainer.limit_test_batches 1 "
    "--trainer.enable_model_summary false --data.download false --data.train_subset 256 --data.eval_batch_size 500 "
    "--model.hidden_sizes [32] --model.scheduler none"
)
LABS = {  # axis -> {variant: args}: the course's questions on tiny runs
    "activations": {
        "tanh": "--model.activation tanh --model.optimizer adam --model.lr 0.01",
        "sigmoid": "--model.activation sigmoid --model.optimizer adam --model.lr 0.01",
    },
    "optimizers": {
        "sgd": "--model.optimizer sgd --model.lr 0.1 --model.momentum 0",
        "sgd_momentum": "--model.optimizer sgd --model.lr 0.1 --model.momentum 0.9",
    },
    "dropout": {"no_dropout": "--model.dropout 0", "dropout_0.5": "--model.dropout 0.5"},
}


def write_lab(folder: Path, axis: str) -> str:
    variants = "\n".join(f"  - {{name: {name}, args: {args}}}" for name, args in LABS[axis].items())
    path = folder / f"{axis}.yaml"
    path.write_text(
        f"description: Tiny {axis} axis.\nbase: configs/mnist.yaml\nseed: 7\ntarget_acc: 0.3\n"
        f"args: >-\n  {TINY}\nvariants:\n{variants}\n"
    )
    return str(path)


def paradis_lab(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "paradis-lab"), *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def md_table(md: str) -> set[tuple[str, str]]:
    """(axis, variant) of every row of the course's side-by-side table."""
    found, axis = set(), None
    for line in md.split("## All axes side by side")[1].splitlines():
        if line.startswith("| ") and not line.startswith("| axis"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            axis = cells[0].strip("*") or axis
            found.add((axis, cells[1].replace("**", "").replace(" (best)", "")))
    return found


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """Two lab files run together, then the same two plus a third into the same lab folder."""
    tmp = tmp_path_factory.mktemp("course")
    labs = {axis: write_lab(tmp, axis) for axis in LABS}
    runs = tmp / "lab"
    first = paradis_lab(labs["activations"], labs["optimizers"], "--runs-dir", str(runs), "--jobs", "2")
    snapshot = {name: (runs / name).read_text() for name in ("course.md", "course.html")}
    checkpoints = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/checkpoints/best.ckpt")}
    second = paradis_lab(*labs.values(), "--runs-dir", str(runs), "--jobs", "2")
    return {"runs": runs, "first": first, "snapshot": snapshot, "checkpoints": checkpoints, "second": second}


def test_course_report_of_two_lab_files(course):
    md, page = course["snapshot"]["course.md"], course["snapshot"]["course.html"]
    assert "Course report" in course["first"].stdout
    assert md_table(md) == {
        ("activations", "tanh"),
        ("activations", "sigmoid"),
        ("optimizers", "sgd"),
        ("optimizers", "sgd_momentum"),
    }
    assert "- GPU: not available" in md and "- CPU: " in md and "torch " in md
    # The sentences carry the measured numbers.
    runs = json.loads((course["runs"] / "activations" / "results.json").read_text())["runs"]
    tanh, sigmoid = runs["tanh"][0]["test_acc"], runs["sigmoid"][0]["test_acc"]
    assert f"tanh reached {tanh:.4f} and sigmoid {sigmoid:.4f} test accuracy" in md
    assert "**Does dropout prevent over-fitting?** Not answered by this run" in md
    assert re.search(r"paradis-lab \S+/activations.yaml \S+/optimizers.yaml --runs-dir \S+ --jobs 2", md)
    # Self-contained HTML: every image inline, nothing fetched, same figures as the Markdown links.
    sources = re.findall(r'<img src="([^"]{0,30})', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert md.count("](activations/") + md.count("](optimizers/") == 6 + 2  # 6 figures, 2 report links
    assert not re.search(r"<script|<link|https?://|@import|url\(", page)


def test_one_more_lab_file_adds_its_axis_without_rerunning(course):
    out = course["second"].stdout
    assert out.count("finished earlier, read back") == 4
    assert "dropout/no_dropout: done" in out and "dropout/dropout_0.5: done" in out
    assert {p: p.stat().st_mtime_ns for p in course["checkpoints"]} == course["checkpoints"]
    md = (course["runs"] / "course.md").read_text()
    assert len(md_table(md)) == 6 and ("dropout", "dropout_0.5") in md_table(md)
    assert "**Does dropout prevent over-fitting?** Not answered" not in md
    assert "### Does dropout prevent over-fitting?" in md and "no_dropout: training loss went from" in md


def test_course_html_in_chromium(course, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium()), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route(
            "**/*",
            lambda route: route.abort() if not route.request.url.startswith(("file:", "data:")) else route.continue_(),
        )
        page.goto((course["runs"] / "course.html").as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth)")
        assert len(images) == 9 and all(w > 0 for w in images)
        rows = page.eval_on_selector_all(
            "tbody[data-axis]",
            "els => Object.fromEntries(els.map(e => [e.dataset.axis, e.querySelectorAll('tr.variant').length]))",
        )
        assert rows == {axis: len(variants) for axis, variants in LABS.items()}
        pdf = tmp_path / "course.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=True)
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
        browser.close()


# -- sentences from fabricated numbers -----------------------------------------------------------------------------
def run(
    args: str,
    test_acc: float,
    epoch_time: float = 1.0,
    val_acc=(0.9, 0.95),
    train_loss=(0.5, 0.3),
    val_loss=(0.4, 0.35),
) -> dict:
    command = f"OMP_NUM_THREADS=1 paradis fit --config configs/mnist.yaml {args} --run_dir runs/x"
    return {
        "status": "ok",
        "commands": [command, command.replace(" fit ", " test ")],
        "test_acc": test_acc,
        "best_val_acc": max(val_acc),
        "epochs": len(val_acc),
        "epoch_time_s": epoch_time,
        "peak_memory_mb": 2.0,
        "epochs_to_target": next((i for i, a in enumerate(val_acc, 1) if a >= 0.93), None),
        "parameters": 1000,
        "device": "cpu",
        "curves": {"val/acc": list(val_acc), "train/loss_epoch": list(train_loss), "val/loss": list(val_loss)},
    }


def fabricate(runs: Path, axes: dict[str, dict[str, dict]]):
    for axis, variants in axes.items():
        (runs / axis).mkdir(parents=True, exist_ok=True)
        (runs / axis / "results.json").write_text(
            json.dumps(
                {
                    "lab": f"configs/lab/{axis}.yaml",
                    "argv": [f"configs/lab/{axis}.yaml"],
                    "description": "",
                    "target_acc": 0.93,
                    "folds": 1,
                    "rows": [summarize(v, [r]) for v, r in variants.items()],
                    "runs": {v: [r] for v, r in variants.items()},
                }
            )
        )
    return collect(runs)


def activations(tanh: float, sigmoid: float, relu_time: float) -> dict[str, dict]:
    return {
        "activations": {
            "relu": run("--model.activation relu", 0.97, epoch_time=relu_time),
            "tanh": run("--model.activation tanh", tanh, epoch_time=1.2),
            "sigmoid": run("--model.activation sigmoid", sigmoid, epoch_time=1.1),
        }
    }


def test_sentences_follow_the_numbers(tmp_path):
    text = lambda answer: " ".join(answer.lines)  # noqa: E731
    axes = fabricate(tmp_path / "a", activations(tanh=0.968, sigmoid=0.964, relu_time=1.0))
    said = text(tanh_vs_sigmoid(axes))
    assert (
        "tanh reached 0.9680 and sigmoid 0.9640 test accuracy: tanh was higher by 0.40 points, as the course expects"
        in said
    )
    assert "relu was the fastest per epoch, 10.0 % ahead of sigmoid, as the course expects" in text(relu_fastest(axes))
    swapped = fabricate(tmp_path / "b", activations(tanh=0.964, sigmoid=0.968, relu_time=1.3))
    said = text(tanh_vs_sigmoid(swapped))
    assert (
        "tanh reached 0.9640 and sigmoid 0.9680 test accuracy: sigmoid was higher by 0.40 points: this contradicts"
        in said
    )
    assert "The fastest per epoch was sigmoid (1.10 s); relu took 18.2 % longer: it was not the fastest" in text(
        relu_fastest(swapped)
    )
    # The sentence reaches both files of the course.
    write_course(tmp_path / "b")
    for name in ("course.md", "course.html"):
        assert "sigmoid was higher by 0.40 points" in (tmp_path / "b" / name).read_text()

    slow, quick = (0.80, 0.90, 0.94), (0.90, 0.95, 0.97)
    for plain_curve, momentum_curve, verdict in (
        (slow, quick, "Momentum accelerated SGD here"),
        (quick, slow, "Momentum did not accelerate SGD"),
    ):
        axes = fabricate(
            tmp_path / verdict[:12].replace(" ", "_"),
            {
                "optimizers": {
                    "sgd": run("--model.optimizer sgd --model.momentum 0", 0.95, val_acc=plain_curve),
                    "sgd_momentum": run("--model.optimizer sgd --model.momentum 0.9", 0.96, val_acc=momentum_curve),
                }
            },
        )
        assert verdict in text(momentum(axes))

    overfit, steady = (
        dict(train_loss=(0.5, 0.2, 0.05), val_loss=(0.4, 0.3, 0.5)),
        dict(train_loss=(0.6, 0.4, 0.3), val_loss=(0.4, 0.32, 0.3)),
    )
    axes = fabricate(
        tmp_path / "d",
        {
            "dropout": {
                "no_dropout": run("--model.dropout 0", 0.95, **overfit),
                "dropout_0.5": run("--model.dropout 0.5", 0.96, **steady),
            }
        },
    )
    said = text(dropout(axes))
    assert (
        "no_dropout: training loss went from 0.500 to 0.050; validation loss was lowest at epoch 2 (0.300) and ended at 0.500, 0.200 above its minimum: over-fitting"
        in said
    )
    assert "Dropout reduced the over-fitting: the last-epoch gap went from 0.450 to 0.000" in said
    axes = fabricate(
        tmp_path / "e",
        {
            "dropout": {
                "no_dropout": run("--model.dropout 0", 0.95, **overfit),
                "dropout_0.5": run("--model.dropout 0.5", 0.96, **overfit),
            }
        },
    )
    assert "Dropout did not reduce the over-fitting here" in text(dropout(axes))
    # Missing axes and failed variants are said, not guessed.
    assert text(momentum(axes)).startswith("Not answered by this run: no axis trains SGD")
    broken = activations(0.97, 0.96, 1.0)
    broken["activations"]["tanh"].update(status="failed", stage="fit", error="boom")
    said = text(tanh_vs_sigmoid(fabricate(tmp_path / "f", broken)))
    assert said == "Not answered by this run: in activations, `tanh` failed in fit: boom."
