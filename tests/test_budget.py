"""Extending a finished run (issue 17, item 4): a learning-rate schedule sized from the run's budget (cosine over
max_epochs, one-cycle and the DDPM / text schedules over the run's optimizer steps) cannot continue exactly with
a larger budget, so such a resume is refused in one sentence and the run folder is left as it was; a schedule
that does not depend on the budget continues exactly (test_resume.py, test_stop_matrix.py)."""

from __future__ import annotations

import hashlib

import pytest
from resume_tools import DDPM, MNIST, ckpt, fit


def files(run):
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "args, budget, first, then",
    [
        ([*MNIST, "--model.scheduler", "cosine"], "--trainer.max_epochs", "1", "2"),
        ([*MNIST, "--model.scheduler", "onecycle", "--trainer.max_epochs", "2"], "--trainer.max_steps", "3", "6"),
        ([*DDPM, "--model.export_on_fit_end", "false"], "--trainer.max_epochs", "1", "2"),
    ],
)
def test_a_larger_budget_for_a_budget_sized_schedule_is_one_sentence(tmp_path, capsys, args, budget, first, then):
    run = tmp_path / "run"
    assert fit(*args, "--run_dir", str(run), budget, first) == 0
    before, step = files(run), ckpt(run / "checkpoints" / "last.ckpt")["global_step"]
    capsys.readouterr()
    assert fit(*args, "--run_dir", str(run), budget, then, "--ckpt_path", "last") == 2
    err = capsys.readouterr().err
    assert "learning-rate schedule sized for" in err and "resume with the budget the run started with" in err
    assert files(run) == before and ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == step
