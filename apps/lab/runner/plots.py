"""The report's figures: val acc and loss curves per epoch, time and memory bars."""

from __future__ import annotations

import statistics
from pathlib import Path

from apps.lab.runner.table import mean_curve


def plot(results: dict[str, list[dict]], out_dir: Path) -> list[tuple[str, str]]:
    """val acc, train/val loss, time and memory bars -> [(title, png name)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ok = {name: runs for name, runs in results.items() if all(r["status"] == "ok" for r in runs)}
    if not ok:
        return []
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
        axes,
        [
            ("epoch_time_s", "epoch wall time (s)"),
            ("samples_per_s", "samples / s"),
            ("peak_memory_mb", "peak memory (MB)"),
        ],
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
