"""Recipes for cats at 32 px on CPU, raced at equal CPU budgets (issue 19; on the cats' faces: issue 33).

    python benchmarks/cats_race.py run base --minutes 15                 # train recipe `base` to 15 CPU-minutes
    python benchmarks/cats_race.py run base --minutes 30                 # continue it (exactly) to 30
    python benchmarks/cats_race.py run epsilon --minutes 15 --steps 572   # base's step count at its 15-minute mark
    python benchmarks/cats_race.py list                                  # the recipes
    python benchmarks/cats_race.py run c24minsnr5 --minutes 15 --config configs/ddpm_catfaces32_cpu.yaml \
        --root runs/race_faces                                           # a race on the face crops (issue 33)
    python benchmarks/cats_race.py montage OUT.png base=GRID.png epsilon=GRID.png --rows 2   # grids' top rows, labelled

Every recipe is `--config` (default configs/ddpm_cats32_cpu.yaml, the whole photos; configs/ddpm_catfaces32_cpu.yaml
races on the cats' face crops, its `data.crop`) with a few changes (RECIPES), trained on `--photos` (default
../shared/data/cats128) in `--root/<recipe>/` by `paradis fit` itself (race.json names the config; a run is continued
only with the config it started with), with:
  * one thread (OMP_NUM_THREADS=1 and torch.set_num_threads(1)): the budget is process CPU time spent in
    training (`time.process_time` from the start of training, summed over continuations), so runs compare on
    a shared machine and an idle 2-core machine gives at least this much in as many wall minutes;
  * no max_time and no epoch limit: the LR is constant after warm-up (the module's schedule when the run
    length is unknown), so a run stopped at 15 minutes is the first part of the same run at 120;
  * the stop at the first epoch end past the budget (`CPUBudget`), so `--ckpt_path last` continues exactly;
    each stop's checkpoint is copied to `mark_<minutes>.ckpt` and its grid to `grid_<minutes>.png`, and
    `race.json` records CPU seconds, steps and images seen per mark.
Scores (KID/FID of each mark against the photos, or the crops for a face run): benchmarks/cats_score.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

from apps.cli import ParadisCLI  # noqa: E402
from paradis.quiet import silence_library_noise  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "cats128"
CONFIG = ROOT / "configs" / "ddpm_cats32_cpu.yaml"


def ema_decay(decay: float):
    def edit(config: dict) -> None:
        for callback in config["trainer"]["callbacks"]:
            if callback["class_path"].endswith("EMA"):
                callback["init_args"]["decay"] = decay

    return edit


# name -> changes to the --config: {"section.key": value} (model/data: init_args; trainer: the trainer section; the
# harness's own trainer settings in recipe_config come first) or a function of the config dict
RECIPES: dict[str, dict] = {
    "base": {},  # v-prediction, cosine betas, lr 2e-3, batch 64
    "epsilon": {"model.prediction_type": "epsilon"},
    "minsnr5": {"model.snr_gamma": 5.0},
    "lr1e-3": {"model.lr": 0.001},
    "lr4e-3": {"model.lr": 0.004},
    "batch32": {"data.batch_size": 32},
    "ema0.999": {"ema": ema_decay(0.999)},
    "deep2": {"model.num_res_blocks": 2},  # 2 ResNet blocks per level (~1.7x a step)
    "wide48": {"model.model_channels": 48, "model.attention_head_dim": 48},
    # issue 33, on the faces: a narrower U-Net (24 ch x [1, 2, 3, 4], ~2.0M parameters; the cost sits in the
    # 32 px and 16 px levels, which scale with the width squared) for more images per CPU second, + Min-SNR-5
    "c24minsnr5": {"model.model_channels": 24, "model.attention_head_dim": 24, "model.snr_gamma": 5.0},
    # issue 33: the probe with a higher peak LR behind a longer warm-up (the probe's val/loss still falls steeply at
    # its 30-minute mark: under-trained, not over-fitting), raced at the probe's step counts (--steps)
    "lr3e-3w500": {"model.lr": 0.003, "model.warmup_steps": 500, "model.snr_gamma": None},
    # issue 33: the probe, the faces' baseline (configs/ddpm_catfaces32_cpu.yaml before Min-SNR-5 won: its `base`)
    "probe": {"model.snr_gamma": None},
}


def recipe_config(name: str, base: Path = CONFIG) -> dict:
    config = yaml.safe_load(Path(base).read_text())
    config["trainer"].update(max_epochs=-1, max_time=None, check_val_every_n_epoch=5)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("SampleGrid"):
            callback["init_args"]["every_n_epochs"] = 0  # one grid when each stage ends, outside the budget
    for key, value in RECIPES[name].items():
        if callable(value):
            value(config)
            continue
        section, field = key.split(".")
        (config[section] if section == "trainer" else config[section]["init_args"])[field] = value
    return config


def config_name(path) -> str:
    """The config's path relative to the repository (as given, when outside it): how race.json names it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class CPUBudget(Callback):
    """Stops at the first training-epoch end after `budget` CPU seconds of training (counting `spent` before), or
    after `steps` optimizer steps when given (then CPU time is only recorded)."""

    def __init__(self, budget: float, spent: float, steps: int | None = None) -> None:
        self.budget, self.spent, self.steps, self.start = budget, spent, steps, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.process_time()

    def used(self) -> float:
        return self.spent + (time.process_time() - self.start if self.start is not None else 0.0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.global_step >= self.steps) if self.steps else self.used() >= self.budget:
            trainer.should_stop = True


class RaceCLI(ParadisCLI):
    budget: CPUBudget | None = None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.insert(0, self.budget)
        return trainer


def run(args) -> None:
    torch.set_num_threads(1)
    silence_library_noise()  # what `paradis` does at start-up
    folder = Path(args.root) / args.recipe
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "race.json"
    log = (
        json.loads(log_path.read_text())
        if log_path.exists()
        else {
            "recipe": args.recipe,
            "config": config_name(args.config),
            "changes": {k: (v if not callable(v) else v.__qualname__) for k, v in RECIPES[args.recipe].items()},
            "marks": [],
        }
    )
    if log.get("config", config_name(CONFIG)) != config_name(args.config):
        raise SystemExit(
            f"{folder} was trained from {log.get('config', config_name(CONFIG))}; pass that --config or another --root"
        )
    spent = log["marks"][-1]["cpu_s"] if log["marks"] else 0.0
    done = log["marks"][-1]["steps"] if log["marks"] else 0
    if (done >= args.steps) if args.steps else spent >= args.minutes * 60:
        print(f"{args.recipe} already has {spent / 60:.1f} CPU minutes and {done} steps")
        return
    config_path = folder / "recipe.yaml"
    config_path.write_text(yaml.safe_dump(recipe_config(args.recipe, args.config)))
    RaceCLI.budget = CPUBudget(args.minutes * 60, spent, args.steps)
    cmd = [
        "fit",
        "--config",
        str(config_path),
        "--data.data_dir",
        str(args.photos),
        "--run_dir",
        str(folder / "run"),
        "--trainer.enable_progress_bar",
        "false",
    ]
    if log["marks"]:
        cmd += ["--ckpt_path", "last"]
    wall = time.perf_counter()
    sys.argv = sys.argv[:1]  # the command is `cmd`: with both, LightningCLI warns that they may differ
    cli = RaceCLI(args=cmd)
    minutes = int(args.minutes) if args.minutes == int(args.minutes) else args.minutes
    shutil.copy(folder / "run" / "checkpoints" / "last.ckpt", folder / f"mark_{minutes}.ckpt")
    grids = sorted((folder / "run" / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime)
    if grids:
        shutil.copy(grids[-1], folder / f"grid_{minutes}.png")
    trainer = cli.trainer
    batch = cli.datamodule.batch_size
    log["marks"].append(
        {
            "minutes": minutes,
            "budget": f"{args.steps} steps" if args.steps else "CPU time",
            "cpu_s": round(RaceCLI.budget.used(), 1),
            "wall_s": round(time.perf_counter() - wall, 1),
            "steps": trainer.global_step,
            "epochs": trainer.current_epoch,
            "images_seen": trainer.global_step * batch,
            "val_loss": float(trainer.callback_metrics.get("val/loss", float("nan"))),
        }
    )
    log_path.write_text(json.dumps(log, indent=2))
    print(json.dumps(log["marks"][-1]))


def montage(args) -> None:
    """The top `--rows` rows of each labelled grid (SampleGrid's: 2 px padding), stacked, one label line above each."""
    from PIL import Image, ImageDraw

    strips = []
    for item in args.grids:
        label, _, path = item.partition("=")
        grid = Image.open(path).convert("RGB")
        cell = (grid.height - 2) // round((grid.height - 2) / 34)  # a 32 px image and its padding
        strip = Image.new("RGB", (grid.width, 14 + 2 + cell * args.rows), "white")
        strip.paste(grid.crop((0, 0, grid.width, 2 + cell * args.rows)), (0, 14))
        ImageDraw.Draw(strip).text((2, 1), label, fill="black")
        strips.append(strip)
    out = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    for i, strip in enumerate(strips):
        out.paste(strip, (0, sum(s.height for s in strips[:i])))
    out.save(args.out)
    print(f"wrote {args.out} ({out.width}x{out.height})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("recipe", choices=sorted(RECIPES))
    run_parser.add_argument("--minutes", type=float, required=True, help="CPU minutes of training in all")
    run_parser.add_argument(
        "--steps",
        type=int,
        help="stop at the first epoch end past this many optimizer steps "
        "instead of --minutes of CPU (the mark keeps the name of --minutes): for recipes that "
        "cost what `base` costs per step, equal steps are an equal budget whatever the load",
    )
    run_parser.add_argument("--photos", default=str(PHOTOS))
    run_parser.add_argument("--root", default=str(ROOT.parent / "race"))
    run_parser.add_argument(
        "--config", default=str(CONFIG), help="the config the recipes change (default: %(default)s)"
    )
    sub.add_parser("list")
    montage_parser = sub.add_parser("montage")
    montage_parser.add_argument("out")
    montage_parser.add_argument("grids", nargs="+", help="LABEL=PATH of a grid_<minutes>.png")
    montage_parser.add_argument("--rows", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "montage":
        return montage(args)
    if args.command == "list":
        for name, changes in RECIPES.items():
            print(name, {k: (v if not callable(v) else "EMA decay") for k, v in changes.items()})
        return
    run(args)


if __name__ == "__main__":
    main()
