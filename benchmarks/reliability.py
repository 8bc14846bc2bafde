"""The BENCHMARKS.md "Reliability" figures (issue 13): resume parity per task, the step `last.ckpt` holds after
each way of stopping, kill -9 survival, and the sentence each bad input gets. CPU, 32-bit, tiny configs.

    OMP_NUM_THREADS=1 python benchmarks/reliability.py        # ~3 min on 2 cores; prints markdown tables
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import os  # noqa: E402

os.chdir(ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from resume_tools import DDPM, MNIST, ckpt, differences, fit, max_weight_diff  # noqa: E402
from text_fixtures import make_tiny_distilbert  # noqa: E402


def quiet_fit(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = fit(*args)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("paradis:")]
    return code, lines[-1] if lines else ""


def stop_at(step: int, name: str = "SIGTERM") -> list[str]:
    return [
        "--trainer.callbacks+=probe_callbacks.SignalAt",
        "--trainer.callbacks.step",
        str(step),
        "--trainer.callbacks.signal_name",
        name,
    ]


def parity(out: Path) -> list[str]:
    tiny = make_tiny_distilbert(out / "tiny")
    text = [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        str(tiny),
        "--data.data_dir",
        str(out / "data"),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "4",
    ]
    rows = [
        "| task | run | interrupted at | max \\|Δw\\| | other differences (optimizer, schedulers, EMA) |",
        "|---|---|---|---|---|",
    ]
    for task, args, stop in [
        ("MNIST MLP (dropout, augmentation, cosine LR)", [*MNIST, "--trainer.max_epochs", "3"], 6),
        ("DDPM tiny (EMA, warm-up + cosine)", DDPM, 4),
        ("text tiny (LoRA, length-grouped)", text, 6),
    ]:
        name = task.split()[0].lower()
        straight, resumed = out / f"{name}_straight", out / f"{name}_resumed"
        quiet_fit(*args, "--run_dir", str(straight))
        quiet_fit(*args, "--run_dir", str(resumed), *stop_at(stop))
        quiet_fit(*args, "--run_dir", str(resumed), "--ckpt_path", "last")
        a, b = ckpt(straight / "checkpoints" / "last.ckpt"), ckpt(resumed / "checkpoints" / "last.ckpt")
        other = [d for d in differences(a, b) if not d.startswith("/state_dict")]
        rows.append(
            f"| {task} | {a['global_step']} steps | SIGTERM at step {stop} (mid-epoch) | "
            f"{max_weight_diff(a, b):.1e} | {len(other)} |"
        )
    return rows


STOP_WAYS = [  # (way of stopping, arguments): the rows of BENCHMARKS.md's table
    (
        "max_epochs, validation twice an epoch",
        ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "5", "--trainer.val_check_interval", "0.5"],
    ),
    ("max_steps mid-epoch", ["--trainer.max_steps", "6"]),
    (
        "max_time mid-epoch",
        [
            "--trainer.max_time",
            "00:00:00:01",
            "--trainer.limit_train_batches",
            "1.0",
            "--data.train_subset",
            "16384",
            "--data.batch_size",
            "4",
        ],
    ),
    (
        "early stopping",
        [
            "--trainer.max_epochs",
            "5",
            "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
            "--trainer.callbacks.monitor",
            "val/acc",
            "--trainer.callbacks.mode",
            "max",
            "--trainer.callbacks.patience",
            "0",
            "--trainer.callbacks.min_delta",
            "1.0",
        ],
    ),
]


def stopping(out: Path) -> list[str]:
    from apps.cli import ParadisCLI

    rows = ["| stopped by | training stopped at step | last.ckpt holds step | exit code |", "|---|---|---|---|"]
    for i, (way, args) in enumerate(STOP_WAYS):
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            cli = ParadisCLI(args=["fit", *MNIST, "--run_dir", str(out / f"way{i}"), *args])
        rows.append(
            f"| {way} | {cli.trainer.global_step} | {ckpt(out / f'way{i}' / 'checkpoints' / 'last.ckpt')['global_step']} | 0 |"
        )
    for i, name in enumerate(["SIGINT", "SIGTERM"]):
        code, line = quiet_fit(
            *MNIST, "--trainer.max_epochs", "3", "--run_dir", str(out / f"sig{i}"), *stop_at(6, name)
        )
        label = "Ctrl-C (SIGINT) at step 6" if name == "SIGINT" else "SIGTERM at step 6"
        rows.append(f"| {label} | 6 | {ckpt(out / f'sig{i}' / 'checkpoints' / 'last.ckpt')['global_step']} | {code} |")
    return rows


def kills(out: Path) -> list[str]:
    from test_kill import ARGS, kill_loop

    run, steps, during_save = kill_loop(out, kills=10)
    code, _ = quiet_fit(*ARGS, "--run_dir", str(run), "--ckpt_path", "last")
    final = ckpt(run / "checkpoints" / "last.ckpt")["global_step"]
    return [
        "| kills (SIGKILL) | of them during a checkpoint write | last.ckpt loaded after the kill | resumed to the end |",
        "|---|---|---|---|",
        f"| {len(steps) - 1} / 10 survived | {during_save} | {len(steps) - 1} / 10; its step "
        f"after each kill: {steps[1:]} | {'yes' if code == 0 and final == 300 else 'no'} (step {final} of 300) |",
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for title, make in [("Resume parity", parity), ("Ways of stopping", stopping), ("kill -9", kills)]:
            print(f"\n{title}\n")
            folder = out / title.split()[0]
            folder.mkdir(parents=True, exist_ok=True)
            print("\n".join(make(folder)))


if __name__ == "__main__":
    main()
