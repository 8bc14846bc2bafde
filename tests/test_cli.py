"""The real `paradis` command end to end on MNIST: fit, resume, test, predict, bf16, bad input (DDP: test_ddp.py)."""

from __future__ import annotations

import csv
import re
import shutil

import pytest
import torch
from conftest import run_paradis
from PIL import Image

from apps.cli import main

# A few batches of the bundled MNIST: the whole pipeline, in seconds.
FAST = [
    "--config",
    "configs/mnist.yaml",
    "--data.download",
    "false",
    "--data.train_subset",
    "2048",
    "--data.val_size",
    "1000",
    "--trainer.limit_train_batches",
    "8",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
    "--trainer.log_every_n_steps",
    "2",
    "--trainer.enable_progress_bar",
    "false",
]


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def paradis_main(capsys, *args) -> tuple[int, str]:
    """Run `paradis` in-process (fast, for errors): (exit code, stderr)."""
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exc:
        mp.setattr("sys.argv", ["paradis"])
        main(list(args))
    return exc.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """fit 2 epochs, with gradient accumulation, clipping and a step LR schedule."""
    run = tmp_path_factory.mktemp("run") / "mnist"
    proc = run_paradis(
        "fit",
        *FAST,
        "--run_dir",
        str(run),
        "--trainer.max_epochs",
        "2",
        "--trainer.accumulate_grad_batches",
        "2",
        "--trainer.gradient_clip_val",
        "1.0",
        "--model.scheduler",
        "step",
        "--model.step_size",
        "1",
        "--model.gamma",
        "0.5",
    )
    return run, proc


def test_fit_writes_the_run_folder(trained):
    run, proc = trained
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert f"Run folder: {run}" in proc.stderr and "tensorboard --logdir" in proc.stderr
    last = ckpt(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1 and last["global_step"] == 8  # 2 epochs x 8 batches / accumulate 2
    assert last["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(0.001 * 0.5**2)
    assert last["hyper_parameters"]["_class_path"] == "lightning_modules.mnist.MNISTClassifier"


def test_resume_continues_from_last(trained, tmp_path):
    run, _ = trained
    copy = tmp_path / "resumed"
    shutil.copytree(run, copy)
    before = ckpt(copy / "checkpoints" / "last.ckpt")
    run_paradis(
        "fit",
        *FAST,
        "--run_dir",
        str(copy),
        "--trainer.max_epochs",
        "3",
        "--ckpt_path",
        "last",
        "--trainer.accumulate_grad_batches",
        "2",
        "--model.scheduler",
        "step",
        "--model.step_size",
        "1",
        "--model.gamma",
        "0.5",
    )
    after = ckpt(copy / "checkpoints" / "last.ckpt")
    assert after["epoch"] == 2 and after["global_step"] == before["global_step"] + 4
    # optimizer and scheduler state carried over: one more decay, Adam's step count continued
    assert after["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(0.001 * 0.5**3)
    state = after["optimizer_states"][0]["state"][0]
    assert int(state["step"]) == after["global_step"]


def test_test_and_predict_use_the_run(trained, tmp_path):
    run, _ = trained
    proc = run_paradis("test", *FAST, "--run_dir", str(run))
    assert "test/acc" in proc.stdout
    acc = float(re.search(r"test/acc\D*?([01]\.\d+)", proc.stdout).group(1))
    assert 0.5 < acc <= 1.0  # 8 steps of Adam already classify most digits
    digits = tmp_path / "digits"
    digits.mkdir()
    from datamodules.mnist_sources import load_bundled

    test_images = load_bundled()[2]
    for i in range(3):
        Image.fromarray(test_images[i].numpy()).resize((64, 64)).save(digits / f"{i}.png")
    run_paradis("predict", *FAST, "--run_dir", str(run), "--data.predict_path", str(digits))
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == ["0.png", "1.png", "2.png"]
    assert all(0 <= int(r["prediction"]) <= 9 for r in rows)
    assert all(abs(sum(float(r[f"p_{d}"]) for d in range(10)) - 1) < 1e-3 for r in rows)


def test_fit_again_refuses_to_overwrite(trained, capsys):
    run, _ = trained
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    code, err = paradis_main(capsys, "fit", *FAST, "--run_dir", str(run))
    assert code == 2 and "already holds a trained run" in err and "--ckpt_path last" in err
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_resume_without_checkpoint_says_so(tmp_path, capsys):
    code, err = paradis_main(capsys, "fit", *FAST, "--run_dir", str(tmp_path / "empty"), "--ckpt_path", "last")
    assert code == 2 and "There is no checkpoint to resume" in err
    assert not (tmp_path / "empty" / "checkpoints").exists()


def test_corrupt_checkpoint_is_clear_and_harmless(trained, tmp_path, capsys):
    run, _ = trained
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:1000])  # truncated
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    code, err = paradis_main(capsys, "test", *FAST, "--run_dir", str(run), "--ckpt_path", str(bad))
    assert code == 2 and "cannot be read" in err and "corrupt, truncated" in err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    code, err = paradis_main(capsys, "test", *FAST, "--run_dir", str(run), "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize(
    "override, message",
    [
        (["--model.activation", "swishy"], "Unknown activation 'swishy'; choose one of: "),
        (["--model.lr", "-0.01"], "Learning rate (model.lr) must be greater than zero"),
        (
            ["--data.data_dir", "/nonexistent/mnist", "--data.bundled", "false"],
            "No MNIST found in /nonexistent/mnist and downloading is off",
        ),
    ],
)
def test_bad_config_values_end_in_one_sentence(tmp_path, capsys, override, message):
    code, err = paradis_main(capsys, "fit", *FAST, "--run_dir", str(tmp_path / "r"), *override)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("paradis: error: " + message)
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_the_real_command_exits_non_zero_with_one_sentence(tmp_path):
    proc = run_paradis(
        "fit", *FAST, "--run_dir", str(tmp_path / "r"), "--model.activation", "swishy", check=False, warm=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "paradis: error: Unknown activation 'swishy'; choose one of: relu, tanh, sigmoid, gelu, leaky_relu, elu, silu."
    )
    assert "Traceback" not in proc.stderr


def test_print_config(capsys):
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exc:
        mp.setattr("sys.argv", ["paradis"])
        main(["fit", "--config", "configs/mnist.yaml", "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: lightning_modules.mnist.MNISTClassifier" in out and "hidden_sizes" in out


# The MNIST DDP run (2 CPU processes) is in tests/test_ddp.py, with per-rank shard assertions.


def test_bf16_mixed_and_early_stopping(tmp_path):
    run = tmp_path / "bf16"
    run_paradis(
        "fit",
        *FAST,
        "--run_dir",
        str(run),
        "--trainer.max_epochs",
        "5",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.limit_train_batches",
        "2",
        "--model.hidden_sizes",
        "[16]",
        "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
        "--trainer.callbacks.monitor",
        "val/acc",
        "--trainer.callbacks.mode",
        "max",
        "--trainer.callbacks.patience",
        "0",
        "--trainer.callbacks.min_delta",
        "1.0",
    )
    last = ckpt(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1  # stopped after the second epoch (no improvement of 1.0 is possible)
    config = (run / "config.yaml").read_text()
    assert "precision: bf16-mixed" in config and "EarlyStopping" in config


def test_progress_bar_and_profiler_cost_little_per_batch(tmp_path, capsys):
    """Lightning's tqdm bar redraws twice per batch at its default refresh rate (more CPU than an MLP step): the MNIST
    configs set Lightning's `TQDMProgressBar(refresh_rate=50)`, and `--trainer.enable_progress_bar false` still works
    with it. The default profiler is a no-op without a generator per hook; `--trainer.profiler` picks Lightning's."""
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.profilers import SimpleProfiler

    from apps.cli import ParadisCLI
    from paradis.profiler import NoProfiler

    def fit(*args: str) -> ParadisCLI:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.argv", ["paradis"])  # not pytest's arguments: LightningCLI warns when it sees both
            return ParadisCLI(args=["fit", *args, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1"])

    assert FAST[-2:] == ["--trainer.enable_progress_bar", "false"]
    cli = fit(*FAST[:-2], "--run_dir", str(tmp_path / "a"))
    assert isinstance(cli.trainer.profiler, NoProfiler)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, TQDMProgressBar)]
    assert len(bars) == 1 and bars[0].refresh_rate == 50
    redraws = capsys.readouterr().out.count("Epoch 0:")
    assert 1 <= redraws < 8  # 8 batches: the last one is drawn; at refresh_rate 1 Lightning draws 2 per batch (18 here)

    # (a run this short validates after its last step, so that the best checkpoint has its metric)
    short = ["--trainer.val_check_interval", "1"]
    profiled = fit(
        *FAST[:-2], *short, "--run_dir", str(tmp_path / "b"), "--trainer.profiler", "simple", "--trainer.max_steps", "2"
    )
    assert isinstance(profiled.trainer.profiler, SimpleProfiler)
    assert any("training_step" in action for action in profiled.trainer.profiler.recorded_durations)

    quiet = fit(*FAST, *short, "--trainer.max_steps", "1", "--run_dir", str(tmp_path / "c"))
    assert not any(isinstance(c, TQDMProgressBar) for c in quiet.trainer.callbacks)
