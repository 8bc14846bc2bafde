"""The logged metrics after a resume: a run stopped by Ctrl-C at an epoch end and resumed with `--ckpt_path last`
logs the same TensorBoard scalars as the uninterrupted run (README, "Resume"). The weights, optimizer, EMA and
schedule after every way of stopping, on every task, are test_stop_matrix.py's."""

from __future__ import annotations

from resume_tools import MNIST, ckpt, differences, fit, scalars


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


def test_logged_metrics_after_a_resume_at_an_epoch_end(tmp_path):
    """Plain mode (no accumulation), dropout, augmentation and a cosine schedule over max_epochs; Ctrl-C at the
    end of the first epoch. Mid-epoch, a resumed run logs the epoch means of its part of the epoch (README)."""
    straight, run = tmp_path / "straight", tmp_path / "resumed"
    assert fit(*MNIST, "--run_dir", str(straight), "--trainer.max_epochs", "3") == 0
    assert fit(*MNIST, "--run_dir", str(run), "--trainer.max_epochs", "3", *stop_at(4, "SIGINT")) == 130
    assert ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert fit(*MNIST, "--run_dir", str(run), "--trainer.max_epochs", "3", "--ckpt_path", "last") == 0
    assert_same_run(straight, run)
    assert_same_metrics(straight, run)
