"""The commands of README.md and docs/*.md, read from their fenced code blocks, and how tests/test_readme.py runs
each one in tiny form.

- A ```bash block holds one command per line (`\\` continues a line, `#` starts a comment); a block that sets
  shell variables (`URL=...`, `FILE=$(...)`) is one script. A ```python block is one snippet. Other blocks
  (yaml, plain text: outputs and file trees) are not commands.
- Every command either runs here, in tiny form (`tiny_paradis_args` and friends: options appended after the
  README's own, run folders in a temporary working directory, small data), or is named in `SKIPPED` with the
  reason it cannot run here. tests/test_readme.py checks that nothing else is skipped.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/*.md")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PYTHON_LANGS = {"python", "py", "python3"}

# Commands that cannot run on this machine, by their text in the README (comment stripped, spaces collapsed).
SKIPPED = {
    "make install": "installs the virtual environment these tests run in (`make test` runs it first)",
    "make test": "runs this test suite: it would run itself",
    "make test-quick": "runs part of this test suite: it would run itself",
    "make gpu-check OUT=gpu_check PHOTOS=~/photos/cats": "needs a CUDA GPU (benchmarks/gpu_check.py; tests/test_gpu_check.py covers what runs on a CPU)",
    "paradis fit --config configs/mnist.yaml --trainer.precision 16-mixed": "16-mixed needs a GPU (Lightning refuses it on CPU)",
    "torchrun --nnodes 2 --nproc_per_node 4 --node_rank 0 --master_addr $MASTER --master_port 29500 -m apps.cli fit "
    "--config configs/ddpm_cats.yaml --trainer.strategy ddp --trainer.devices 4 --trainer.num_nodes 2": "two machines with 4 GPUs each (tests/test_ddp.py runs 2 torchrun nodes on 127.0.0.1)",
    "srun paradis fit --config configs/ddpm_cats.yaml --trainer.strategy ddp --trainer.devices 4 --trainer.num_nodes 2": "a SLURM cluster of two machines with 4 GPUs each",
    "paradis fit --config configs/text_lora.yaml": "downloads distilbert-base-uncased from the Hugging Face Hub; the tests run offline",
}


@dataclass(frozen=True)
class Command:
    doc: str  # README.md, docs/design.md
    line: int  # where it starts
    lang: str  # "shell", "script" (a shell block run as a whole) or "python"
    text: str  # shell: the command without its comment, spaces collapsed; script/python: the block
    comment: str = ""  # shell: its trailing comment and the comment lines right after it

    @property
    def name(self) -> str:
        """How SKIPPED and the reports name it: a shell command's text, a block's first line."""
        return self.text if self.lang == "shell" else f"{self.lang}: {self.text.strip().splitlines()[0]}"

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_files() -> list[Path]:
    return [p for pattern in DOCS for p in sorted(ROOT.glob(pattern))]


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line of the first content line, language, content lines without the fence's indentation)."""
    blocks, open_fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", line)
        if open_fence is None:
            if match:
                open_fence = (match.group(1), match.group(2), match.group(3).lower(), number + 1, [])
        elif match and match.group(2) == open_fence[1] and not match.group(3):
            indent, _, lang, start, lines = open_fence
            blocks.append((start, lang, [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines]))
            open_fence = None
        else:
            open_fence[4].append(line)
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """`cmd args  # note` -> ("cmd args", "note"): a `#` that starts a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def logical_lines(lines: list[str], start: int) -> list[tuple[int, str]]:
    """Join `\\` continuations; (line number, text)."""
    out, current, first = [], "", None
    for offset, line in enumerate(lines):
        if first is None:
            first = start + offset
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append((first, current + line))
        current, first = "", None
    if current:
        out.append((first, current))
    return out


def is_script(lines: list[tuple[int, str]]) -> bool:
    """A block that sets shell variables is one script, run as a whole."""
    return any(
        re.match(r"^[A-Za-z_]\w*=\S*(;|$|\s+[A-Za-z_]\w*=)", split_comment(text)[0].strip()) or "$(" in text
        for _, text in lines
    )


def extract(path: Path) -> list[Command]:
    doc = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    commands: list[Command] = []
    for start, lang, lines in fenced_blocks(path.read_text()):
        if lang in PYTHON_LANGS:
            commands.append(Command(doc, start, "python", "\n".join(lines) + "\n"))
        elif lang in SHELL_LANGS:
            logical = logical_lines(lines, start)
            if is_script(logical):
                commands.append(Command(doc, start, "script", "\n".join(lines) + "\n"))
                continue
            for number, text in logical:
                command, comment = split_comment(text)
                command = " ".join(command.split())
                if command:
                    commands.append(Command(doc, number, "shell", command, comment))
                elif (
                    comment and commands and commands[-1].doc == doc and commands[-1].lang == "shell" and number > start
                ):
                    last = commands[-1]  # a comment line under a command describes it (`# -> runs/lab/course.html`)
                    commands[-1] = Command(
                        last.doc, last.line, last.lang, last.text, f"{last.comment}\n{comment}".strip()
                    )
    return commands


def all_commands() -> list[Command]:
    return [c for path in doc_files() for c in extract(path)]


def expand(text: str, cwd: Path, env: dict) -> list[str]:
    """The argv bash would pass for this command line (braces, variables), without running it."""
    proc = subprocess.run(
        ["bash", "-c", f"for a in {text}; do printf '%s\\0' \"$a\"; done"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.split("\0")[:-1]


def promised_files(comment: str) -> list[str]:
    """Files a command's comment says it writes: `-> runs/mnist/predictions.csv`, `+ grid.png`."""
    found = re.findall(r"->\s*(\S+\.\w+)", comment)
    return [f.rstrip(":,") for f in found]


# -- tiny form -------------------------------------------------------------------------------------------------
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
LIMITS = {
    "fit": [
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.log_every_n_steps",
        "1",
    ],
    "validate": ["--trainer.limit_val_batches", "1"],
    "test": ["--trainer.limit_test_batches", "1"],
    "predict": [],
}
TINY_DATA = {
    "mnist": ["--data.download", "false", "--data.train_subset", "256", "--data.val_size", "500"],
    # a ~180k-parameter U-Net at 32 px (tests/configs/ddpm_tiny.yaml), a few sampling steps
    "ddpm": [
        "--model.sample_size",
        "32",
        "--data.image_size",
        "32",
        "--model.model_channels",
        "16",
        "--model.channel_mult",
        "[1, 2]",
        "--model.num_res_blocks",
        "1",
        "--model.attention_resolutions",
        "[16]",
        "--model.attention_head_dim",
        "16",
        "--model.dropout",
        "0.0",
        "--model.warmup_steps",
        "2",
        "--model.sample_steps",
        "3",
        "--data.batch_size",
        "8",
        "--data.eval_batch_size",
        "16",
        "--data.num_samples",
        "4",
        "--data.predict_batch_size",
        "4",
    ],
    "text": [
        "--data.train_size",
        "32",
        "--data.val_size",
        "16",
        "--data.test_size",
        "16",
        "--data.batch_size",
        "8",
        "--data.eval_batch_size",
        "16",
        "--model.max_length",
        "32",
    ],
}
STOP = "readme_commands.StopAfterFirstEpoch"
CAT_FACES = ROOT / "tests" / "data" / "cat_faces"  # the bundled CC0 photo of a cat whose face both cascades find


class StopAfterFirstEpoch(Callback):
    """A fresh tiny `fit` stops after the first of its 2 epochs (as early stopping would), so that a later
    `--ckpt_path last` in the README resumes a stopped run and finishes its budget."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def task_of(config: Path) -> str:
    import yaml

    path = yaml.safe_load(config.read_text())["model"]["class_path"]
    return {"mnist": "mnist", "ddpm": "ddpm", "text": "text"}[path.split(".")[1]]


def option(argv: list[str], name: str) -> str | None:
    """The last value of `--name VALUE` / `--name=VALUE`."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def configs_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]


def tiny_paradis_args(argv: list[str], cwd: Path) -> list[str]:
    """What the harness appends to `paradis SUBCOMMAND ...` (argv without the program)."""
    sub, configs = argv[0], configs_of(argv)
    extra = QUIET + LIMITS.get(sub, [])
    if configs:
        config = Path(configs[-1]) if Path(configs[-1]).is_absolute() else cwd / configs[-1]
        task = task_of(config)
        extra += TINY_DATA[task]
        if config.stem.startswith("ddpm_catfaces"):  # photos with a cat face (the synthetic ones have none)
            extra += ["--data.data_dir", str(CAT_FACES), "--data.cache_dir", "runs/.face_cache"]
    if sub == "fit" and option(argv, "--ckpt_path") is None:
        run_dir = option(argv, "--run_dir") or str(Path("runs") / Path(configs[-1]).stem)
        if (cwd / run_dir / "checkpoints").exists() and option(argv, "--run_dir") is None:
            n = 2
            while (cwd / f"{run_dir}-{n}").exists():
                n += 1
            extra += ["--run_dir", f"{run_dir}-{n}"]  # the README's commands train the same config more than once
        extra += [f"--trainer.callbacks+={STOP}"]
    return extra


TINY_LAB = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
    "--data.download",
    "false",
    "--data.train_subset",
    "256",
    "--data.val_size",
    "500",
    "--threads",
    "1",
]
TINY_SEARCH = ["--trials", "2"]
TINY_CATS_SCORE = ["--n", "4", "--batch", "4", "--steps", "2", "--kid-subsets", "2", "--kid-subset-size", "2"]
TINY_PIPELINE = {
    "num_inference_steps=1000": "num_inference_steps=3",
    "num_inference_steps=50": "num_inference_steps=3",
    "batch_size=16": "batch_size=2",
}
