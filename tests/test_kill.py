"""`kill -9` at random moments, some of them in the middle of a checkpoint write (issue 13, item 3): after
every kill `last.ckpt` loads, and the next run resumes from it; the last run reaches the end."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

from paradis.checkpoint import read_checkpoint
from resume_tools import MNIST, ckpt, fit

KILLS = 10
# a bigger MLP (1.6 MB checkpoints) written after every step: the writes take a good share of the time
ARGS = [*MNIST, "--model.hidden_sizes", "[128, 128]", "--trainer.limit_train_batches", "1.0", "--data.batch_size", "32",
        "--trainer.max_steps", "60", "--trainer.max_epochs", "-1", "--checkpoint.every_n_steps", "1", "--trainer.limit_val_batches", "0"]


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.0005)
    return False


def test_kill_dash_nine_never_corrupts_last_checkpoint(tmp_path):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["kill_child"])
    from kill_child import run_fit

    run, rng = tmp_path / "run", random.Random(13)
    last, tmp = run / "checkpoints" / "last.ckpt", run / "checkpoints" / ".last.ckpt.tmp"
    steps, during_save = [0], 0
    for kill in range(KILLS):
        resume = ["--ckpt_path", "last"] if last.exists() else []
        child = ctx.Process(target=run_fit, args=([*ARGS, "--run_dir", str(run), *resume], str(tmp_path / "log")))
        child.start()
        if kill % 2:  # wait until a write of last.ckpt is under way, then kill
            assert wait_for(tmp.exists, 60), (tmp_path / "log").read_text()[-3000:]
        else:  # a random moment: start-up, training or a write
            assert wait_for(last.exists, 60) if kill == 0 else True
            time.sleep(rng.uniform(0.0, 1.5))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        during_save += tmp.exists()  # the temporary file outlives a kill only in the middle of a write
        if last.exists():
            steps.append(read_checkpoint(last)["global_step"])  # loads: complete and readable
            assert steps[-1] >= steps[-2]  # the run resumed from it, not from scratch
    assert during_save >= 3, during_save
    assert fit(*ARGS, "--run_dir", str(run), "--ckpt_path", "last") == 0
    assert ckpt(last)["global_step"] == 60 and steps[-1] > 0
    assert not tmp.exists()
