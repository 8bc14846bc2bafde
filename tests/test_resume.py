"""Exact resume (issue 13, items 1-3): an interrupted run resumed with `--ckpt_path last` ends with the same
weights, optimizer state, EMA and logged metrics as an uninterrupted one: bit for bit, on CPU in 32-bit.

The interruptions are real signals sent to the process at a given step (tests/probe_callbacks.py): SIGTERM as a
cluster sends it, and SIGINT as Ctrl-C does; a resume also follows a run that simply ended (max_epochs)."""

from __future__ import annotations

import pytest
from resume_tools import DDPM, MNIST, ckpt, differences, fit, scalars


def stop_at(step: int, signal_name: str = "SIGTERM") -> list[str]:
    return [
        "--trainer.callbacks+=probe_callbacks.SignalAt",
        "--trainer.callbacks.step",
        str(step),
        "--trainer.callbacks.signal_name",
        signal_name,
    ]


def assert_same_run(a, b):
    first, second = ckpt(a / "checkpoints" / "last.ckpt"), ckpt(b / "checkpoints" / "last.ckpt")
    assert first["global_step"] == second["global_step"]
    assert differences(first, second) == []  # weights, optimizer, schedulers, EMA: torch.equal everywhere


def assert_same_metrics(a, b):
    straight, resumed = scalars(a), scalars(b)
    assert straight.keys() == resumed.keys()
    for key, values in resumed.items():
        assert len(set(values)) == 1 and values[0] == straight[key][-1], key  # logged once, or twice the same


@pytest.fixture(scope="module")
def mnist_straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("mnist") / "straight"
    assert fit(*MNIST, "--run_dir", str(run), "--trainer.max_epochs", "3") == 0
    return run


@pytest.mark.parametrize("step, signal_name, code", [(4, "SIGINT", 130), (6, "SIGTERM", 143)])
def test_mnist_interrupted_and_resumed_equals_straight(mnist_straight, tmp_path, step, signal_name, code):
    """Dropout, augmentation and a cosine schedule over max_epochs; stopped at an epoch end (step 4, Ctrl-C)
    or in the middle of an epoch (step 6, SIGTERM)."""
    run = tmp_path / "resumed"
    assert fit(*MNIST, "--run_dir", str(run), "--trainer.max_epochs", "3", *stop_at(step, signal_name)) == code
    assert ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == step
    assert fit(*MNIST, "--run_dir", str(run), "--trainer.max_epochs", "3", "--ckpt_path", "last") == 0
    assert_same_run(mnist_straight, run)
    if step == 4:  # at an epoch boundary the logged metrics match too (mid-epoch, see README: epoch means)
        assert_same_metrics(mnist_straight, run)


STEP_LR = ["--model.scheduler", "step", "--model.step_size", "1", "--model.gamma", "0.5"]


@pytest.mark.parametrize(
    "budget, first, then",
    [
        ("--trainer.max_epochs", "1", "3"),  # with a schedule that does not depend on max_epochs
        ("--trainer.max_steps", "6", "10"),  # stopped in the middle of an epoch
    ],
)
def test_mnist_finished_run_continues_with_a_larger_budget(tmp_path, budget, first, then):
    """A run that ended on its budget, resumed with `--ckpt_path last` and a larger one, equals a run with the
    larger budget from the start."""
    args = [*MNIST, *STEP_LR, "--trainer.max_epochs", "3"] if "epochs" in budget else MNIST
    assert fit(*args, "--run_dir", str(tmp_path / "a"), budget, then) == 0
    assert fit(*args, "--run_dir", str(tmp_path / "b"), budget, first) == 0
    assert fit(*args, "--run_dir", str(tmp_path / "b"), budget, then, "--ckpt_path", "last") == 0
    assert_same_run(tmp_path / "a", tmp_path / "b")
    if "epochs" in budget:  # (a run ended mid-epoch logs the epoch means of its part of the epoch)
        assert_same_metrics(tmp_path / "a", tmp_path / "b")


def test_ddpm_resume_is_exact_with_ema(tmp_path):
    """DDPM draws noise and timesteps from the global RNG every step; EMA weights, warm-up + cosine schedule.
    Stopped at the end of epoch 0 (step 3), then in the middle of epoch 1 (step 4), resumed each time."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert fit(*DDPM, "--run_dir", str(straight)) == 0
    assert fit(*DDPM, "--run_dir", str(resumed), *stop_at(3)) == 143
    assert fit(*DDPM, "--run_dir", str(resumed), "--ckpt_path", "last", *stop_at(4)) == 143
    assert ckpt(resumed / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert fit(*DDPM, "--run_dir", str(resumed), "--ckpt_path", "last") == 0
    assert_same_run(straight, resumed)
    last = ckpt(resumed / "checkpoints" / "last.ckpt")
    assert "current_model_state" in last and differences(last["state_dict"], last["current_model_state"])  # EMA != raw


def test_text_resume_is_exact(tmp_path):
    """LoRA with dropout, length-grouped batches, warm-up: SIGTERM in the middle of epoch 1, then resumed."""
    from text_fixtures import make_tiny_distilbert

    text = [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        str(make_tiny_distilbert(tmp_path / "tiny")),
        "--data.data_dir",
        str(tmp_path / "data"),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "4",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert fit(*text, "--run_dir", str(straight)) == 0
    assert fit(*text, "--run_dir", str(resumed), *stop_at(6)) == 143
    assert fit(*text, "--run_dir", str(resumed), "--ckpt_path", "last") == 0
    assert_same_run(straight, resumed)
