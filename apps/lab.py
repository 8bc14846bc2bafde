"""`paradis-lab`: run one axis of MNIST experiments and write a comparison report.

    paradis-lab configs/lab/<axis>.yaml [--folds K] [--force] [--runs-dir DIR] [--section.key value ...]

A lab file names a base config, the overrides every variant shares, and the
variants: an explicit list, a grid (the product of several dimensions), or both.

    base: configs/mnist.yaml          # one path, or a list of --config files
    seed: 42                          # --seed_everything for every run
    target_acc: 0.97                  # "epochs to reach" column
    args: --trainer.max_epochs 5      # shared overrides (a string or a list)
    variants:
      - {name: relu, args: --model.activation relu}
    grid:                             # dimension -> {label: args} or option -> [values]
      model.lr: [0.1, 0.01]

Each variant is a real `paradis fit` then `paradis test` subprocess with its
own run folder `<runs-dir>/<axis>/<variant>/` (its own TensorBoard run), the
same seed and the same data. A finished variant leaves `result.json` and is
skipped next time (its numbers are read back) unless its command or the content
of the base config changed, or `--force` is given; an unfinished one is cleaned and run again. A variant that
fails is reported with its error while the others go on. Arguments after the
lab file that `paradis-lab` does not know (e.g. `--trainer.max_epochs 2`) are
added to every command. `--folds K` runs each variant K times with
`--data.folds K --data.fold i` and reports mean ± std. Exit code 1 when a
variant failed (the report is still written), 2 on a bad lab file.

Afterwards `<runs-dir>/<axis>/report.md` holds the table, the plots and the
exact command of every run; the table is also printed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

RESULT_FILE = "result.json"
WEIGHTS_FILE = "initial_weights.json"
LAB_KEYS = {"name", "description", "base", "seed", "target_acc", "args", "variants", "grid"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
# Per-epoch series read from TensorBoard, and the one test metric.
SERIES = ("train/loss_epoch", "val/loss", "val/acc", "perf/epoch_time_s", "perf/samples_per_s", "perf/peak_memory_mb")
TEST_TAG = "test/acc"
PLACEHOLDER_TAGS = ("val/acc", "test/acc")


class InitialWeights(Callback):
    """Writes the parameter count and a SHA-256 of the initial weights to `<run folder>/initial_weights.json`.

    Runs in `setup` (before any step or checkpoint restore), so equal hashes across
    variants prove they started from the same weights.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            tensor = tensor.detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its raw 16-bit words
                tensor = tensor.view(torch.int16)
            digest.update(tensor.numpy().tobytes())
        info = {
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            "trainable_parameters": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "sha256": digest.hexdigest(),
        }
        path = Path(trainer.default_root_dir) / WEIGHTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=1))


# -- lab file ---------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    args: list[str]


@dataclass
class Lab:
    path: Path
    axis: str
    base: list[str]
    seed: Optional[int]
    target_acc: float
    args: list[str]
    variants: list[Variant]
    description: str = ""


def as_args(value: Any, where: str) -> list[str]:
    """A string ("--model.lr 0.1") or a list of strings -> argv list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ValueError(f"{where} must be a string of options or a list of strings, got {value!r}.")


def format_value(value: Any) -> str:
    """A YAML value as the CLI expects it: lists as `[64,64]`, booleans lower-case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def grid_variants(grid: Any, where: str) -> list[Variant]:
    """Product of the grid's dimensions; each dimension is {label: args} or option: [values]."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{where}: `grid` must map each dimension to {{label: args}} or to a list of values.")
    dimensions = []
    for key, choices in grid.items():
        if isinstance(choices, dict) and choices:
            dimensions.append([(str(label), as_args(args, f"{where}: grid.{key}.{label}")) for label, args in choices.items()])
        elif isinstance(choices, list) and choices:
            option = str(key).lstrip("-")
            short = option.rsplit(".", 1)[-1]
            dimensions.append(
                [(f"{short}{format_value(v).strip('[]').replace(',', 'x')}", [f"--{option}", format_value(v)]) for v in choices]
            )
        else:
            raise ValueError(f"{where}: grid dimension `{key}` must be a non-empty mapping or list.")
    return [
        Variant("_".join(label for label, _ in combo), [a for _, args in combo for a in args])
        for combo in itertools.product(*dimensions)
    ]


def load_lab(path: str | Path) -> Lab:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Lab file {path} does not exist; pass one of configs/lab/*.yaml.")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"Lab file {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax.") from None
    if not isinstance(spec, dict):
        raise ValueError(f"Lab file {path} must be a mapping with `base` and `variants` or `grid`.")
    unknown = sorted(set(spec) - LAB_KEYS)
    if unknown:
        raise ValueError(f"Lab file {path} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(LAB_KEYS))}.")
    base = spec.get("base")
    base = [base] if isinstance(base, str) else base
    if not base or not all(isinstance(b, str) for b in base):
        raise ValueError(f"Lab file {path} needs `base: <config.yaml>` (the config every variant starts from).")
    for config in base:
        if not Path(config).is_file():
            raise FileNotFoundError(f"Base config {config} named in {path} does not exist; run paradis-lab from the repository root or fix `base`.")
    variants = []
    for i, item in enumerate(spec.get("variants") or []):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{path}: variant #{i + 1} must be a mapping with `name` and `args`.")
        variants.append(Variant(str(item["name"]), as_args(item.get("args"), f"{path}: variant {item['name']}")))
    if spec.get("grid") is not None:
        variants += grid_variants(spec["grid"], str(path))
    if not variants:
        raise ValueError(f"Lab file {path} defines no variants; add a `variants` list or a `grid`.")
    names = [v.name for v in variants]
    for name in names:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{path}: variant name {name!r} is not a valid folder name; use letters, digits, _ . = + -.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: variant name(s) {', '.join(duplicates)} appear more than once; make names unique.")
    target = float(spec.get("target_acc", 0.95))
    if not 0 < target <= 1:
        raise ValueError(f"{path}: target_acc must be in (0, 1], got {target}.")
    seed = spec.get("seed")
    return Lab(
        path=path,
        axis=str(spec.get("name") or path.stem),
        base=list(base),
        seed=None if seed is None else int(seed),
        target_acc=target,
        args=as_args(spec.get("args"), f"{path}: args"),
        variants=variants,
        description=str(spec.get("description") or "").strip(),
    )


# -- running ----------------------------------------------------------------------------------
def paradis_bin() -> str:
    exe = Path(sys.executable).parent / "paradis"
    return str(exe) if exe.exists() else "paradis"


def run_commands(lab: Lab, variant: Variant, run_dir: Path, extra: list[str], fold: Optional[tuple[int, int]]) -> list[list[str]]:
    """The `paradis fit` and `paradis test` argv of one run."""
    args = [a for c in lab.base for a in ("--config", c)]
    if lab.seed is not None:
        args += ["--seed_everything", str(lab.seed)]
    args += lab.args + variant.args + extra
    if fold is not None:
        args += ["--data.folds", str(fold[1]), "--data.fold", str(fold[0])]
    args += ["--run_dir", str(run_dir)]
    fit = ["paradis", "fit", *args, f"--trainer.callbacks+={__name__}.InitialWeights"]
    test = ["paradis", "test", *args]
    return [fit, test]


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


def read_scalars(run_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """Every scalar in the run folder's TensorBoard event files: tag -> [(wall_time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "histograms": 1, "tensors": 1, "images": 1})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(values) for tag, values in scalars.items()}


def run_metrics(run_dir: Path, target_acc: float) -> dict[str, Any]:
    """Per-epoch curves and summary numbers of one finished run, from its TensorBoard events.

    The module's `log_hyperparams` writes placeholder `val/acc` and `test/acc` values of 0.0 at
    step 0 when training starts: they are dropped. `test/acc` is the last value written (by the
    `paradis test` process, after the fit).
    """
    scalars = {
        tag: [e for e in events if not (tag in PLACEHOLDER_TAGS and e[1] == 0 and e[2] == 0.0)]
        for tag, events in read_scalars(run_dir).items()
    }
    curves = {tag: [value for _, _, value in scalars.get(tag, [])] for tag in SERIES}
    test = scalars.get(TEST_TAG, [])
    val_acc = curves["val/acc"]
    reached = next((epoch for epoch, acc in enumerate(val_acc, 1) if acc >= target_acc), None)
    weights_file = run_dir / WEIGHTS_FILE
    weights = json.loads(weights_file.read_text()) if weights_file.exists() else {}
    mean = lambda xs: statistics.fmean(xs) if xs else math.nan  # noqa: E731
    return {
        "test_acc": test[-1][2] if test else math.nan,
        "best_val_acc": max(val_acc) if val_acc else math.nan,
        "final_val_acc": val_acc[-1] if val_acc else math.nan,
        "epochs": len(val_acc),
        "epochs_to_target": reached,
        "epoch_time_s": mean(curves["perf/epoch_time_s"]),
        "samples_per_s": mean(curves["perf/samples_per_s"]),
        "peak_memory_mb": max(curves["perf/peak_memory_mb"]) if curves["perf/peak_memory_mb"] else math.nan,
        "parameters": weights.get("parameters"),
        "init_sha256": weights.get("sha256"),
        "curves": curves,
    }


def run_variant(lab: Lab, variant: Variant, run_dir: Path, extra: list[str], fold, force: bool, log) -> dict[str, Any]:
    """Run (or read back) one fit+test; returns its result record."""
    commands = run_commands(lab, variant, run_dir, extra, fold)
    shown = [shlex.join(c) for c in commands]
    base_sha256 = hashlib.sha256(b"".join(Path(c).read_bytes() for c in lab.base)).hexdigest()
    result_file = run_dir / RESULT_FILE
    if result_file.exists() and not force:
        result = json.loads(result_file.read_text())
        if result.get("commands") == shown and result.get("base_sha256") == base_sha256 and result.get("status") == "ok":
            # Read the numbers back from the run's events (the target may have changed in the lab file).
            result.update(run_metrics(run_dir, lab.target_acc), target_acc=lab.target_acc, skipped=True)
            return result
        log("command or base config changed since the last run: running it again;")
    clean_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "variant": variant.name,
        "fold": fold and fold[0],
        "commands": shown,
        "base_sha256": base_sha256,
        "run_dir": str(run_dir),
    }
    for stage, command in zip(("fit", "test"), commands):
        log_file = run_dir / f"{stage}.log"  # written as it runs: `tail -f` it to follow a long run
        with log_file.open("w") as output:
            proc = subprocess.run([paradis_bin(), *command[1:]], stdout=output, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            result.update(status="failed", stage=stage, error=error_line(log_file.read_text(), proc.returncode))
            result["wall_time_s"] = time.perf_counter() - start
            return result  # not written: an unfinished variant is run again next time
    result.update(status="ok", wall_time_s=time.perf_counter() - start, **run_metrics(run_dir, lab.target_acc))
    result["target_acc"] = lab.target_acc
    result_file.write_text(json.dumps(result, indent=1))
    result["skipped"] = False
    return result


# -- report -----------------------------------------------------------------------------------
def aggregate(values: list[Optional[float]], digits: int) -> str:
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
        return {"variant": name, "status": "failed", "error": failed[0]["error"], "stage": failed[0]["stage"]}
    get = lambda key: [r.get(key) for r in runs]  # noqa: E731
    reached = get("epochs_to_target")
    params = {r.get("parameters") for r in runs}
    hashes = {(r.get("init_sha256") or "")[:10] for r in runs}
    return {
        "variant": name,
        "status": "ok",
        "test_acc": aggregate(get("test_acc"), 4),
        "best_val_acc": aggregate(get("best_val_acc"), 4),
        "epochs_to_target": "not reached" if None in reached else aggregate([float(r) for r in reached], 1 if len(runs) > 1 else 0),
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
            cells = [row["variant"], f"**failed** ({row['stage']}): {error}"] + [""] * (len(COLUMNS) - 2)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_curve(runs: list[dict], tag: str) -> list[float]:
    """Per-epoch mean over folds (up to the shortest run)."""
    curves = [r["curves"][tag] for r in runs if r.get("curves", {}).get(tag)]
    if not curves:
        return []
    return [statistics.fmean(c[i] for c in curves) for i in range(min(len(c) for c in curves))]


def plot(results: dict[str, list[dict]], out_dir: Path) -> list[tuple[str, str]]:
    """val acc, train/val loss, time and memory bars -> [(title, png name)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {name: runs for name, runs in results.items() if all(r["status"] == "ok" for r in runs)}
    if not ok:
        return []
    from matplotlib.ticker import MaxNLocator

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {name: colors[i % len(colors)] for i, name in enumerate(ok)}
    figures = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in ok.items():
        acc = mean_curve(runs, "val/acc")
        ax.plot(range(1, len(acc) + 1), acc, marker="o", label=name, color=color[name])
    ax.set(xlabel="epoch", ylabel="val accuracy", title="Validation accuracy per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    figures.append(("Validation accuracy per epoch", "val_acc.png", fig))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in ok.items():
        train, val = mean_curve(runs, "train/loss_epoch"), mean_curve(runs, "val/loss")
        ax.plot(range(1, len(train) + 1), train, color=color[name], label=f"{name} train")
        ax.plot(range(1, len(val) + 1), val, color=color[name], linestyle="--", label=f"{name} val")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Train (solid) and validation (dashed) loss per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    figures.append(("Train and validation loss per epoch", "loss.png", fig))

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    names = list(ok)
    for ax, (key, title) in zip(
        axes, [("epoch_time_s", "epoch wall time (s)"), ("samples_per_s", "samples / s"), ("peak_memory_mb", "peak memory (MB)")]
    ):
        values = [[r[key] for r in ok[n]] for n in names]
        means = [statistics.fmean(v) for v in values]
        errs = [statistics.stdev(v) if len(v) > 1 else 0 for v in values]
        ax.bar(names, means, yerr=errs, color=[color[n] for n in names])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45, labelsize="small")
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.suptitle("Speed and memory")
    figures.append(("Speed and memory", "time_memory.png", fig))

    saved = []
    for title, filename, fig in figures:
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        saved.append((title, filename))
    return saved


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"{platform.node() or 'this machine'}: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {version('torch')}, lightning {version('lightning')}"
        + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if os.environ.get("OMP_NUM_THREADS") else "")
    )


def write_report(lab: Lab, out_dir: Path, rows: list[dict], results: dict[str, list[dict]], argv: list[str], folds: int) -> Path:
    plots = plot(results, out_dir)
    lines = [
        f"# MNIST lab: {lab.axis}",
        "",
        lab.description,
        "",
        f"- Lab file: `{lab.path}` — reproduce the whole table with `{shlex.join(['paradis-lab', *argv])}`",
        f"- Machine: {machine_line()}",
        f"- Written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; same seed ({lab.seed}) and data for every variant",
        *(
            [f"- {folds}-fold cross-validation (`--data.folds {folds}`): each cell is mean ± sample std over the folds"]
            if folds > 1
            else []
        ),
        "- Columns: test accuracy of the best checkpoint (by val acc); epoch time, samples/s = mean over training epochs "
        "(validation excluded); peak memory = process RSS on CPU, max CUDA allocation on GPU; initial weights = the "
        "first characters of a SHA-256 of the weights before training (equal hashes = same starting point).",
        "",
        markdown_table(rows, lab.target_acc),
        "",
    ]
    for title, filename in plots:
        lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    lines += ["## Commands", "", "Each row can be reproduced alone (from the repository root):", ""]
    for name, runs in results.items():
        lines.append(f"**{name}**" + (f" — failed: `{runs[0]['error']}`" if runs[0]["status"] != "ok" else ""))
        lines += ["", "```bash"]
        for run in runs:
            lines += run["commands"]
        lines += ["```", ""]
    lines += ["TensorBoard over all variants:", "", "```bash", f"tensorboard --logdir {out_dir}", "```", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


# -- entry point ------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="paradis-lab",
        description="Run every variant of one lab axis (paradis fit + test each) and write a comparison report.",
        epilog="Other --section.key value options are added to every paradis command, e.g. --trainer.max_epochs 2.",
    )
    parser.add_argument("lab", help="lab file, e.g. configs/lab/activations.yaml")
    parser.add_argument("--folds", type=int, default=1, help="k-fold cross-validation: run each variant K times")
    parser.add_argument("--force", action="store_true", help="rerun finished variants too")
    parser.add_argument("--runs-dir", default="runs/lab", help="root of the lab run folders (default runs/lab)")
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") and not a.startswith("--")]
    if bad:
        parser.error(f"unknown option {bad[0]}; paradis-lab passes on only --section.key options.")
    if args.folds < 1:
        parser.error(f"--folds must be at least 1, got {args.folds}.")
    return args, extra


def run_lab(argv: list[str]) -> list[dict]:
    args, extra = parse_args(argv)
    lab = load_lab(args.lab)
    out_dir = Path(args.runs_dir) / lab.axis
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = [None] if args.folds == 1 else [(i, args.folds) for i in range(args.folds)]
    total = len(lab.variants) * len(folds)
    print(f"paradis-lab: {lab.axis}: {len(lab.variants)} variant(s) x {len(folds)} fold(s) into {out_dir}", flush=True)
    results: dict[str, list[dict]] = {}
    done = 0
    for variant in lab.variants:
        runs = []
        for fold in folds:
            done += 1
            run_dir = out_dir / variant.name / (f"fold{fold[0]}" if fold else "")
            label = variant.name + (f" fold {fold[0]}" if fold else "")
            print(f"[{done}/{total}] {label}: ", end="", flush=True)
            result = run_variant(lab, variant, run_dir, extra, fold, args.force, lambda m: print(m, end=" ", flush=True))
            if result["status"] != "ok":
                print(f"FAILED in {result['stage']}: {result['error']}", flush=True)
            elif result.get("skipped"):
                print(f"finished earlier, read back (test acc {result['test_acc']:.4f})", flush=True)
            else:
                print(f"done in {result['wall_time_s']:.0f} s (test acc {result['test_acc']:.4f})", flush=True)
            runs.append(result)
            if result["status"] != "ok":
                break  # the other folds would fail the same way
        results[variant.name] = runs
    rows = [summarize(name, runs) for name, runs in results.items()]
    (out_dir / "results.json").write_text(json.dumps({"lab": str(lab.path), "rows": rows, "runs": results}, indent=1))
    report = write_report(lab, out_dir, rows, results, argv, args.folds)
    print()
    print(markdown_table(rows, lab.target_acc))
    print(f"\nReport: {report}")
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    """Exit code 0 when every variant finished, 1 when some failed (the report is written anyway), 2 on bad input."""
    try:
        rows = run_lab(sys.argv[1:] if argv is None else list(argv))
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("PARADIS_DEBUG"):
            raise
        print(f"paradis-lab: error: {err}", file=sys.stderr)
        sys.exit(2)
    failed = [row["variant"] for row in rows if row["status"] != "ok"]
    if failed:
        print(f"paradis-lab: {len(failed)} variant(s) failed: {', '.join(failed)}; see the report.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
