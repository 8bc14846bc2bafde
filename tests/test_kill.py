"""`kill -9` at random moments, some of them in the middle of a checkpoint write (issue 13, item 3): after
every kill `last.ckpt` loads, and the next run resumes from it; the last run reaches the end."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from resume_tools import MNIST, ckpt, fit

from paradis.checkpoint import read_checkpoint

KILLS = 6  # 3 of them aimed at the middle of a write
# a bigger MLP (1.6 MB checkpoints) written after every step: the writes take a good share of the time
ARGS = [
    *MNIST,
    "--model.hidden_sizes",
    "[128, 128]",
    "--trainer.limit_train_batches",
    "1.0",
    "--data.batch_size",
    "32",
    "--trainer.max_steps",
    "300",
    "--trainer.max_epochs",
    "-1",
    "--checkpoint.every_n_steps",
    "1",
    "--trainer.limit_val_batches",
    "0",
]


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def kill_loop(tmp_path, kills: int = KILLS) -> tuple[Path, list[int], int]:
    """Start, SIGKILL, resume, `kills` times: (run folder, step in last.ckpt after each kill, kills mid-write)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["kill_child"])
    from kill_child import run_fit

    run, rng = tmp_path / "run", random.Random(13)
    last, tmp = run / "checkpoints" / "last.ckpt", run / "checkpoints" / ".last.ckpt.tmp"
    steps, during_save = [0], 0
    for kill in range(kills):
        resume = ["--ckpt_path", "last"] if last.exists() else []
        child = ctx.Process(target=run_fit, args=([*ARGS, "--run_dir", str(run), *resume], str(tmp_path / "log")))
        child.start()
        # let the resumed run write a newer last.ckpt first (proof that it went on from the previous one) ...
        before = last.stat().st_mtime_ns if last.exists() else None  # (a stat per poll: cheap, unlike a load)
        assert wait_for(lambda before=before: last.exists() and last.stat().st_mtime_ns != before, 120), (
            tmp_path / "log"
        ).read_text()[-3000:]
        if kill % 2:  # ... then kill it in the middle of its next write of last.ckpt
            assert wait_for(tmp.exists, 60), (tmp_path / "log").read_text()[-3000:]
        else:  # ... or at a random moment: training or a write
            time.sleep(rng.uniform(0.0, 0.5))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        during_save += tmp.exists()  # the temporary file outlives a kill only in the middle of a write
        steps.append(read_checkpoint(last)["global_step"])  # loads: complete and readable
        assert steps[-1] > steps[-2]  # the run resumed from the previous last.ckpt and went on
    return run, steps, during_save


def test_kill_dash_nine_never_corrupts_last_checkpoint(tmp_path):
    run, steps, during_save = kill_loop(tmp_path)
    last, tmp = run / "checkpoints" / "last.ckpt", run / "checkpoints" / ".last.ckpt.tmp"
    assert during_save >= 2, during_save
    assert fit(*ARGS, "--run_dir", str(run), "--ckpt_path", "last") == 0
    assert ckpt(last)["global_step"] == 300 and steps[-1] > 0
    assert not tmp.exists()
