"""Text model benchmark (CPU): throughput vs the transformers Trainer, accuracy on a budget, checkpoint size.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/text.py [--steps 30] [--budget-steps 500] [--skip-accuracy] [--all-padding]

1. Fine-tuning samples/s, bundled MiniLM + LoRA (r=8 on the LoRA targets of configs/text_lora_minilm.yaml), same pre-tokenised bundled
   reviews, batch size and max length: Paradis (our Lightning module + TextDataModule, length-grouped as in
   the configs) vs `transformers.Trainer` + peft with its own length grouping
   (`train_sampling_strategy="group_by_length"`, the fair comparison); `--all-padding` adds both without
   grouping and the fixed-length recipe (padding="max_length").
   Steady state: timed from step `--warmup` to the last step; the runs alternate, best of `--repeats`. Also
   samples per CPU-second of the process (with 1 thread: robust to a machine shared with other jobs).
   `--bf16` adds the pair in bf16 autocast (Lightning `precision="bf16-mixed"`, HF `bf16=True`).
2. Held-out accuracy of MiniLM + LoRA on the bundled reviews' fixed test split after `--budget-steps`
   optimizer steps (the CPU budget; the wall time is reported).
3. Checkpoint sizes: LoRA vs full fine-tuning checkpoints (Lightning .ckpt with optimizer state) for
   MiniLM, and the LoRA / full weights of a DistilBERT-base-sized model (built from DistilBertConfig).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch import Callback, Trainer, seed_everything  # noqa: E402

from datamodules.text import TextDataModule  # noqa: E402
from lightning_modules.text import TextClassifier  # noqa: E402
from paradis.bundled import resolve_model_path  # noqa: E402

MODEL = "bundled:minilm"
# The shipped default's LoRA targets, on both sides of the comparison (read from the config, so it follows it).
TARGETS = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "text_lora_minilm.yaml").read_text())[
    "model"
]["init_args"]["target_modules"]
CLASSES = ["negative", "positive"]
PARADIS = "paradis (TextClassifier + TextDataModule, group_by_length)"
HF_GROUPED = "hf Trainer + peft (train_sampling_strategy=group_by_length)"


class StepClock(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.samples, self.tokens = warmup, None, None, 0, 0
        self.cpu_start = self.cpu_end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()
        elif trainer.global_step > self.warmup:
            self.samples += len(batch["labels"])
            self.tokens += batch["input_ids"].numel()  # padded tokens: what the model computes on
            self.end, self.cpu_end = time.perf_counter(), time.process_time()


def data_module(args, tmp: str, group_by_length: bool, **kwargs) -> TextDataModule:
    return TextDataModule(
        tokenizer=MODEL,
        max_length=args.max_length,
        batch_size=args.batch_size,
        eval_batch_size=128,
        group_by_length=group_by_length,
        data_dir=tmp,
        seed=0,
        **kwargs,
    )


def lightning_samples_per_s(args, tmp: str, group_by_length: bool, precision: str = "32") -> tuple[float, float, float]:
    seed_everything(0, verbose=False)
    module = TextClassifier(MODEL, lr=1e-3, max_length=args.max_length, target_modules=TARGETS, class_names=CLASSES)
    clock = StepClock(args.warmup)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        logger=False,
        precision=precision,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=data_module(args, tmp, group_by_length))
    return (
        clock.samples / (clock.end - clock.start),
        clock.tokens / clock.samples,
        clock.samples / (clock.cpu_end - clock.cpu_start),
    )


def hf_samples_per_s(
    args, tmp: str, padding: str, group_by_length: bool = False, bf16: bool = False
) -> tuple[float, float, float]:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers import (
        Trainer as HFTrainer,
    )

    seed_everything(0, verbose=False)
    path = resolve_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    dm = data_module(args, tmp, False)
    dm.setup("fit")
    # The same pre-tokenised training texts (token ids) as the Lightning run.
    items = [dm.train[i] for i in range(len(dm.train))]
    if padding == "max_length":  # the fixed-length recipe: every example padded to max_length up front
        padded = tokenizer.pad(
            [{"input_ids": it["input_ids"]} for it in items], padding="max_length", max_length=args.max_length
        )
        items = [
            {"input_ids": ids, "attention_mask": mask, "labels": it["labels"]}
            for ids, mask, it in zip(padded["input_ids"], padded["attention_mask"], items)
        ]
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(
        base, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=TARGETS)
    )

    class Clock(TrainerCallback):
        start = end = cpu_start = cpu_end = None

        def on_step_end(self, targs, state, control, **kwargs):
            if state.global_step == args.warmup:
                Clock.start, Clock.cpu_start = time.perf_counter(), time.process_time()
            elif state.global_step > args.warmup:
                Clock.end, Clock.cpu_end = time.perf_counter(), time.process_time()

    targs = TrainingArguments(
        output_dir=str(Path(tmp) / "hf"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-3,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
        bf16=bf16,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    pad, shapes = DataCollatorWithPadding(tokenizer), []

    def collate(features):
        batch = pad(features)
        shapes.append(batch["input_ids"].shape)
        return batch

    trainer = HFTrainer(model=model, args=targs, train_dataset=items, data_collator=collate, callbacks=[Clock()])
    trainer.train()
    timed = shapes[args.warmup : args.warmup + args.steps]  # step k trains on batch k - 1
    samples = args.steps * args.batch_size
    return (
        samples / (Clock.end - Clock.start),
        sum(b * t for b, t in timed) / samples,
        samples / (Clock.cpu_end - Clock.cpu_start),
    )


def throughput(args, tmp: str) -> dict:
    runs = {
        PARADIS: lambda: lightning_samples_per_s(args, tmp, True),
        HF_GROUPED: lambda: hf_samples_per_s(args, tmp, "longest", group_by_length=True),
    }
    if args.bf16:
        runs.update(
            {
                PARADIS + " bf16-mixed": lambda: lightning_samples_per_s(args, tmp, True, "bf16-mixed"),
                HF_GROUPED + " bf16=True": lambda: hf_samples_per_s(
                    args, tmp, "longest", group_by_length=True, bf16=True
                ),
            }
        )
    if args.all_padding:
        runs.update(
            {
                "paradis (dynamic padding, no grouping)": lambda: lightning_samples_per_s(args, tmp, False),
                "hf Trainer + peft (DataCollatorWithPadding, no grouping)": lambda: hf_samples_per_s(
                    args, tmp, "longest"
                ),
                "hf Trainer + peft (padding=max_length)": lambda: hf_samples_per_s(args, tmp, "max_length"),
            }
        )
    best = {name: (0.0, 0.0, 0.0) for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            value, tokens, per_cpu_s = run()
            best[name] = (max(best[name][0], value), tokens, max(best[name][2], per_cpu_s))
            print(
                f"  [{repeat}] {name}: {value:.2f} samples/s, {per_cpu_s:.1f} samples per CPU-second, "
                f"{tokens:.1f} padded tokens/sample",
                flush=True,
            )
    return best


def accuracy_on_budget(args, tmp: str, run_dir: str) -> dict:
    seed_everything(0, verbose=False)
    module = TextClassifier(
        MODEL,
        lr=args.lr,
        max_length=args.max_length,
        modules_to_save=args.modules_to_save,
        target_modules=TARGETS,
        class_names=CLASSES,
    )
    data = data_module(args, tmp, True)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=args.budget_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=run_dir,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    train_time = time.perf_counter() - start
    ckpt = Path(run_dir) / "lora.ckpt"
    trainer.save_checkpoint(ckpt)
    result = trainer.test(module, datamodule=data, verbose=False)[0]
    return {
        "steps": args.budget_steps,
        "train_time_s": round(train_time, 1),
        "train_examples_seen": args.budget_steps * args.batch_size,
        "test_examples": len(data.test),
        "test_acc": round(result["test/acc"], 4),
        "test_f1": round(result["test/f1"], 4),
        "lora_ckpt": ckpt,
    }


def checkpoint_sizes(args, tmp: str, lora_ckpt: Path | None) -> dict:
    sizes = {}
    data = data_module(args, tmp, False, train_size=args.batch_size)
    for method in ("lora", "full"):
        if method == "lora" and lora_ckpt is not None:
            path = lora_ckpt
        else:
            module = TextClassifier(MODEL, peft_method=method, max_length=args.max_length, class_names=CLASSES)
            trainer = Trainer(
                accelerator="cpu",
                max_steps=1,
                limit_val_batches=0,
                logger=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                enable_checkpointing=False,
                default_root_dir=tmp,
            )
            trainer.fit(module, datamodule=data)
            path = Path(tmp) / f"{method}.ckpt"
            trainer.save_checkpoint(path)
        sizes[f"MiniLM {method} .ckpt (with optimizer state)"] = path.stat().st_size
    # DistilBERT-base-sized (66M), random weights built from the default config: no download.
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    folder = Path(tmp) / "distilbert-base-sized"
    DistilBertModel(DistilBertConfig()).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path(MODEL)).save_pretrained(folder)
    for method in ("lora", "full"):
        module = TextClassifier(str(folder), peft_method=method)
        module.build(["negative", "positive"])
        path = Path(tmp) / f"distilbert-{method}.pt"
        torch.save(module.state_dict(), path)
        trainable, total = module.parameter_counts()
        sizes[f"DistilBERT-base {method} weights ({trainable:,} of {total:,} params trained)"] = path.stat().st_size
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per throughput run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--budget-steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--modules-to-save", nargs="*", default=["pooler"], help="extra trained modules (accuracy run)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default); 1 is faster on a shared, busy CPU"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--all-padding", action="store_true", help="also the runs without length grouping")
    parser.add_argument("--bf16", action="store_true", help="also both in bf16 autocast (CPUs with bf16 support)")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.modules_to_save:
        args.modules_to_save = None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    report: dict = {"settings": {k: v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_throughput:
            best = throughput(args, tmp)
            baseline, baseline_tokens, baseline_cpu = best[HF_GROUPED]
            report["samples_per_s"] = {k: round(v, 2) for k, (v, _, _) in best.items()}
            report["samples_per_cpu_s"] = {k: round(c, 1) for k, (_, _, c) in best.items()}
            report["padded_tokens_per_sample"] = {k: round(t, 1) for k, (_, t, _) in best.items()}
            report["speedup_vs_hf_group_by_length"] = {k: round(v / baseline, 2) for k, (v, _, _) in best.items()}
            report["cpu_time_speedup_vs_hf_group_by_length"] = {
                k: round(c / baseline_cpu, 2) for k, (_, _, c) in best.items()
            }
        lora_ckpt = None
        if not args.skip_accuracy:
            accuracy = accuracy_on_budget(args, tmp, tmp)
            lora_ckpt = accuracy.pop("lora_ckpt")
            report["accuracy"] = accuracy
        report["checkpoint_bytes"] = checkpoint_sizes(args, tmp, lora_ckpt)
        report["load_average_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
