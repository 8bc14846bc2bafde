"""Exact after every way of stopping: each task, on its tiny config on CPU in 32-bit, stopped in one of these ways
and resumed with `--ckpt_path last` to the original budget, ends bit-identical to the uninterrupted run (weights,
optimizer, LR schedule, EMA, step count), and `last.ckpt` holds the step where training stopped:

    max_time       Lightning's Timer, in the middle of an epoch (a probe moves the Timer's clock past the limit
                   after step N)
    early_stop     EarlyStopping at its first validation (in the middle of the first epoch)
    sigterm        the signal a cluster sends, after step N
    ctrl_c         SIGINT, after step N
    kill9          SIGKILL after step N + 1, last.ckpt refreshed every 2 steps (the run restarts from there)
    max_epochs     a smaller --trainer.max_epochs, then the original (MNIST, with a schedule free of the budget)
    max_steps      a smaller --trainer.max_steps, in the middle of an epoch, then the original (idem)
    epoch_end      SIGTERM at the first epoch's last step: last.ckpt is that epoch's end

Why each row is here (the matrix is not a full cross product):
- Every row runs "combined": gradient accumulation (2) and validation every half epoch. That is the strictest
  placement: a stop can land between accumulation steps and next to a mid-epoch validation, and the loader,
  optimizer and schedule all hold mid-epoch state. A plain row would prove nothing a combined row does not.
- MNIST (step LR, dropout, augmentation) runs all seven stops: the ways of stopping differ in the code that
  handles them (Timer, EarlyStopping, two signals, a kill, two budgets), not in the task.
- DDPM (EMA, noise and timesteps drawn from the global RNG every step) and text (LoRA with dropout, length-grouped
  batches) hold task-specific state, so each runs one row per kind of stop code path: Lightning's own stops
  (max_time, early_stop), a signal (sigterm), and kill -9. Ctrl-C and the budgets share those paths (MNIST rows).
- DDPM on a photo folder read lazily (torchdata's StatefulDataLoader with 2 workers, 16 of its 80 files failing
  to decode, so batches lose members): the loader differs, not the stop code. Two rows: sigterm (mid-epoch) and
  epoch_end (workers read ahead as soon as the next epoch's iterator is made, so the loader resumed from an
  epoch's end must know the next epoch before that).
- Logged metrics after a resume at an epoch end, in plain mode: test_resume.py.
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
from PIL import Image
from resume_tools import DDPM, MNIST, ckpt, differences, fit

COMBINED = ["--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", "0.5"]
STEP_LR = ["--model.scheduler", "step", "--model.step_size", "1", "--model.gamma", "0.5"]


def text_args(tmp_path_factory) -> list[str]:
    from text_fixtures import make_tiny_distilbert

    root = tmp_path_factory.getbasetemp()
    return [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        str(make_tiny_distilbert(root / "tiny-distilbert")),
        "--data.data_dir",
        str(root / "text-data"),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "4",
    ]


def lazy_photo_args(tmp_path_factory) -> list[str]:
    """The tiny DDPM on a folder of 64 grey photos and 16 truncated JPEGs (their headers read, their pixels do not
    decode), read lazily by 2 workers: the loader of a folder too large for memory."""
    folder = tmp_path_factory.getbasetemp() / "lazy-photos"
    if not folder.is_dir():
        folder.mkdir()
        noise = np.random.default_rng(0)
        for i in range(80):
            image = Image.fromarray(noise.integers(0, 256, (40, 40), dtype=np.uint8))
            image.save(folder / f"photo_{i:02d}.jpg", quality=95)
            if i % 5 == 4:  # 16 files cut short: `Image.open` passes, decoding raises "image file is truncated"
                data = (folder / f"photo_{i:02d}.jpg").read_bytes()
                (folder / f"photo_{i:02d}.jpg").write_bytes(data[: len(data) // 2])
    return [
        *DDPM,
        "--model.export_on_fit_end",
        "false",
        "--data",
        "datamodules.images.ImageFolderDataModule",
        "--data.data_dir",
        str(folder),
        "--data.channels",
        "1",
        "--data.max_memory_mb",
        "0",
        "--data.num_workers",
        "2",
    ]


# task -> (base arguments, optimizer steps per epoch with accumulation): stops are placed from these
TASKS = {
    "mnist": (lambda f: [*MNIST, *STEP_LR, "--trainer.max_epochs", "3"], 2),
    "ddpm": (lambda f: [*DDPM, "--model.export_on_fit_end", "false"], 2),
    "text": (text_args, 2),
    "ddpm_lazy": (lazy_photo_args, 2),
}
STOPS = ["max_time", "early_stop", "sigterm", "ctrl_c", "kill9", "max_epochs", "max_steps", "epoch_end"]
CASES = [
    (task, stop)
    for task in TASKS
    for stop in STOPS
    if (task == "mnist" and stop != "epoch_end")
    or (task in ("ddpm", "text") and stop in ("max_time", "early_stop", "sigterm", "kill9"))
    or (task == "ddpm_lazy" and stop in ("sigterm", "epoch_end"))
]


def probe(name: str, **init: object) -> list[str]:
    args = [f"--trainer.callbacks+=probe_callbacks.{name}"]
    for key, value in init.items():
        args += [f"--trainer.callbacks.{key}", str(value)]
    return args


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run of each task, made once."""
    runs = {}

    def get(task: str):
        if task not in runs:
            base = [*TASKS[task][0](tmp_path_factory), *COMBINED]
            run = tmp_path_factory.mktemp(task) / "straight"
            assert fit(*base, "--run_dir", str(run)) == 0
            runs[task] = (base, run)
        return runs[task]

    return get


def kill_after(step: int, args: list[str]) -> int:
    """`paradis fit ARGS` in a child process that SIGKILLs itself after optimizer step `step`; its exit code."""
    from kill_child import run_fit

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["kill_child"])
    child = ctx.Process(target=run_fit, args=([*args, *probe("KillAt", step=step)], os.devnull))
    child.start()
    child.join(300)
    return child.exitcode


@pytest.mark.filterwarnings("ignore:Skipped .* could not be decoded")  # the truncated JPEGs of ddpm_lazy
@pytest.mark.parametrize("task, stop", CASES)
def test_stopped_and_resumed_equals_straight(straight, tmp_path, task, stop):
    base, straight_run = straight(task)
    per_epoch = TASKS[task][1]
    step = per_epoch + per_epoch // 2  # in the middle of the second epoch
    run = tmp_path / "stopped"
    args = [*base, "--run_dir", str(run)]
    resume = []
    if stop == "max_time":
        code = fit(*args, "--trainer.max_time", "00:01:00:00", *probe("ClockJumpAt", step=step))
    elif stop == "early_stop":
        code = fit(
            *args,
            "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
            "--trainer.callbacks.monitor",
            "val/loss",
            "--trainer.callbacks.stopping_threshold",
            "1e9",
        )
    elif stop in ("sigterm", "ctrl_c"):
        code = fit(*args, *probe("SignalAt", step=step, signal_name="SIGTERM" if stop == "sigterm" else "SIGINT"))
        assert code == (143 if stop == "sigterm" else 130)
    elif stop == "kill9":
        code = kill_after(step + 1, [*args, "--checkpoint.every_n_steps", "2"])  # (killed before that step's save)
        assert code == -9
        step = step - step % 2  # the last refresh before the kill
    elif stop == "epoch_end":
        step = per_epoch
        assert fit(*args, *probe("SignalAt", step=step, signal_name="SIGTERM")) == 143
        code = 143
    elif stop == "max_epochs":
        code = fit(*args, "--trainer.max_epochs", "1")
    else:  # max_steps, in the middle of an epoch
        code = fit(*args, "--trainer.max_steps", str(step))
    assert code in (0, 130, 143, -9)
    stopped_at = ckpt(run / "checkpoints" / "last.ckpt")["global_step"]
    assert 0 < stopped_at < ckpt(straight_run / "checkpoints" / "last.ckpt")["global_step"]
    if stop in ("max_time", "sigterm", "ctrl_c", "max_steps", "epoch_end"):
        assert stopped_at == step
    if stop == "max_epochs":
        assert stopped_at == per_epoch
    if stop == "early_stop":  # the first validation, in the first epoch
        assert stopped_at <= per_epoch
    if stop == "kill9":  # the last refresh, or a later validation's save
        assert step <= stopped_at <= step + 1
    assert fit(*base, "--run_dir", str(run), "--ckpt_path", "last", *resume) == 0
    first, second = ckpt(straight_run / "checkpoints" / "last.ckpt"), ckpt(run / "checkpoints" / "last.ckpt")
    assert first["global_step"] == second["global_step"]
    assert differences(first, second) == []
