"""Text recipes raced on the bundled Rotten Tomatoes split (issue 20): `paradis fit` then `paradis test` of
configs/text_lora_minilm.yaml with each recipe's overrides, one run at a time.

    python benchmarks/text_recipes.py list
    python benchmarks/text_recipes.py run lora_qv_r8 all_linear_r16 full_ft [--root runs/text_recipes]
    python benchmarks/text_recipes.py table [--root runs/text_recipes]     # the Markdown table of every result

Each run is the real command in a subprocess (`paradis fit --config configs/text_lora_minilm.yaml ARGS --run_dir
ROOT/NAME`, then `paradis test` of its best checkpoint); recorded in ROOT/NAME/result.json: test accuracy and
macro F1, trainable parameters (the module's own count), the size of best.ckpt, the fit's wall time and CPU time
(the subprocess' user + system time), and the machine's load average around the run (the figures of a loaded
machine are flagged in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARADIS = str(Path(sys.executable).parent / "paradis")
CONFIG = "configs/text_lora_minilm.yaml"
BERT_ATTENTION = '["query","key","value","attention.output.dense"]'
BERT_LINEAR = '["query","key","value","attention.output.dense","intermediate.dense","output.dense"]'

RECIPES: dict[str, list[str]] = {
    "lora_qv_r8": [
        "--model.target_modules",
        '["query","value"]',
    ],  # the config before the race: LoRA r=8 on query/value
    "lora_qv_r16": ["--model.lora_r", "16", "--model.lora_alpha", "32"],
    "attention_r8": ["--model.target_modules", BERT_ATTENTION],
    "all_linear_r8": ["--model.target_modules", BERT_LINEAR],  # the winner: the config since (same as no override)
    "all_linear_r16": ["--model.target_modules", BERT_LINEAR, "--model.lora_r", "16", "--model.lora_alpha", "32"],
    "all_linear_r32": ["--model.target_modules", BERT_LINEAR, "--model.lora_r", "32", "--model.lora_alpha", "64"],
    "all_linear_r16_lr1e-3": [
        "--model.target_modules",
        BERT_LINEAR,
        "--model.lora_r",
        "16",
        "--model.lora_alpha",
        "32",
        "--model.lr",
        "0.001",
    ],
    "all_linear_r16_3ep": [
        "--model.target_modules",
        BERT_LINEAR,
        "--model.lora_r",
        "16",
        "--model.lora_alpha",
        "32",
        "--trainer.max_epochs",
        "3",
    ],
    "all_linear_r16_nopooler": [
        "--model.target_modules",
        BERT_LINEAR,
        "--model.lora_r",
        "16",
        "--model.lora_alpha",
        "32",
        "--model.modules_to_save",
        "null",
    ],
    # issue 20's 4 minutes: bf16 autocast, one validation per epoch, LoRA on the upper blocks only (backpropagation
    # stops below the lowest adapted block)
    "all_linear_r8_bf16_1val": ["--trainer.precision", "bf16-mixed", "--trainer.val_check_interval", "1.0"],
    "top4_r8_bf16_1val": [
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.val_check_interval",
        "1.0",
        "--model.lora_layers",
        "[2,3,4,5]",
    ],
    "top3_r8_bf16_1val": [
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.val_check_interval",
        "1.0",
        "--model.lora_layers",
        "[3,4,5]",
    ],
    "all_linear_r8_bf16_1val_nodrop": [
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.val_check_interval",
        "1.0",
        "--model.lora_dropout",
        "0.0",
    ],
    "top3_r8_1val": ["--trainer.val_check_interval", "1.0", "--model.lora_layers", "[3,4,5]"],
    "full_ft": ["--model.peft_method", "full", "--model.lr", "5e-5", "--trainer.max_epochs", "3"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(name: str, root: Path) -> dict:
    folder = root / name
    result_path = folder / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    args = ["--config", CONFIG, *RECIPES[name], "--run_dir", str(folder), "--trainer.enable_progress_bar", "false"]
    load_before = os.getloadavg()[0]
    cpu, wall = children_cpu(), time.perf_counter()
    fit = subprocess.run([PARADIS, "fit", *args], cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    (folder / "fit.log").write_text(fit.stdout + fit.stderr)
    if fit.returncode:
        raise SystemExit(f"{name}: paradis fit failed ({fit.returncode}); see {folder / 'fit.log'}")
    test = subprocess.run([PARADIS, "test", *args], cwd=ROOT, capture_output=True, text=True)
    (folder / "test.log").write_text(test.stdout + test.stderr)
    metrics = dict(re.findall(r"(test/\w+)\s*│\s*([0-9.]+)", test.stdout))
    trainable = re.search(r"([\d,]+) trainable of ([\d,]+) parameters", fit.stdout + fit.stderr)
    result = {
        "recipe": name,
        "overrides": " ".join(RECIPES[name]),
        "test_acc": float(metrics.get("test/acc", "nan")),
        "test_f1": float(metrics.get("test/f1", "nan")),
        "trainable": int(trainable.group(1).replace(",", "")) if trainable else None,
        "total": int(trainable.group(2).replace(",", "")) if trainable else None,
        "best_ckpt_mb": round((folder / "checkpoints" / "best.ckpt").stat().st_size / 2**20, 2),
        "fit_wall_s": round(wall, 1),
        "fit_cpu_s": round(cpu, 1),
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "threads": os.environ.get("OMP_NUM_THREADS", "all"),
    }
    result_path.write_text(json.dumps(result, indent=2))
    return result


def table(root: Path) -> str:
    rows = [
        "| recipe | overrides | test acc | F1 | trainable | % | best.ckpt MB | fit wall s | fit CPU s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(root.glob("*/result.json")):
        r = json.loads(path.read_text())
        share = 100 * r["trainable"] / r["total"] if r["trainable"] else float("nan")
        rows.append(
            f"| {r['recipe']} | `{r['overrides'] or '(config)'}` | {r['test_acc']:.3f} | {r['test_f1']:.3f} | "
            f"{r['trainable']:,} | {share:.2f} | {r['best_ckpt_mb']} | {r['fit_wall_s']} | {r['fit_cpu_s']} | "
            f"{r['load'][0]}–{r['load'][1]} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["list", "run", "table"])
    parser.add_argument("recipes", nargs="*")
    parser.add_argument("--root", default=str(ROOT.parent / "text_recipes"))
    args = parser.parse_args()
    root = Path(args.root)
    if args.command == "list":
        for name, overrides in RECIPES.items():
            print(name, " ".join(overrides))
    elif args.command == "run":
        for name in args.recipes or list(RECIPES):
            print(json.dumps(run(name, root)), flush=True)
    else:
        print(table(root))


if __name__ == "__main__":
    main()
