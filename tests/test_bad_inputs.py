"""One sentence for every bad input, and nothing already in the run folder changed (issue 13, item 5)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from resume_tools import DDPM, MNIST, fit


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# A schedule that does not depend on the budget, so the run can be extended (test_budget.py: one that does).
ARGS = [*MNIST, "--model.scheduler", "step", "--model.step_size", "1"]


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert fit(*ARGS, "--run_dir", str(run), "--trainer.max_epochs", "2") == 0
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


@pytest.mark.parametrize(
    "budget, message",
    [
        (
            ["--trainer.max_epochs", "2"],
            "has already trained 2 epoch(s) and --trainer.max_epochs is 2; pass a larger "
            "--trainer.max_epochs (e.g. 3) to train on.",
        ),
        (
            ["--trainer.max_steps", "5"],
            "has already reached step 8 and --trainer.max_steps is 5; pass a larger "
            "--trainer.max_steps (e.g. 16) to train on.",
        ),
    ],
)
def test_resume_with_a_budget_already_passed(run, capsys, budget, message):
    before = snapshot(run)
    assert fit(*ARGS, "--run_dir", str(run), "--ckpt_path", "last", *budget) == 2
    assert last_error(capsys) == f"paradis: error: {run / 'checkpoints' / 'last.ckpt'} {message}"
    assert snapshot(run) == before


@contextlib.contextmanager
def read_only(*folders: Path):
    """Folders nobody can write into, root included (`chattr +i`; `chmod` does not stop root)."""
    if os.geteuid() != 0:
        for f in folders:
            f.chmod(0o555)
    elif any(subprocess.run(["chattr", "+i", str(f)], capture_output=True).returncode for f in folders):
        pytest.skip("chattr +i is not permitted here")
    try:
        yield
    finally:
        for f in folders:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(f)], capture_output=True)
            f.chmod(0o755)


def test_run_folder_that_cannot_be_written(run, capsys):
    before = snapshot(run)
    with read_only(run, run / "checkpoints"):
        assert fit(*ARGS, "--run_dir", str(run), "--ckpt_path", "last", "--trainer.max_epochs", "3") == 2
        line = last_error(capsys)
    assert line.startswith(f"paradis: error: The run folder {run} cannot be written (")
    assert line.endswith("fix its permissions or free space, or pass --run_dir WRITABLE_FOLDER.")
    assert snapshot(run) == before


def test_disk_full_during_training_keeps_the_previous_checkpoint(run, capsys):
    """The write of last.ckpt hits a real ENOSPC (its temporary file is a link to /dev/full)."""
    before = {name: snapshot(run)[name] for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt")}
    (run / "checkpoints" / ".last.ckpt.tmp").symlink_to("/dev/full")
    assert (
        fit(
            *ARGS,
            "--run_dir",
            str(run),
            "--ckpt_path",
            "last",
            "--trainer.max_epochs",
            "3",
            "--checkpoint.every_n_steps",
            "1",
        )
        == 2
    )
    assert last_error(capsys) == (
        f"paradis: error: Cannot write {run / 'checkpoints' / 'last.ckpt'} (No space left on device); free space or "
        f"fix the permissions of {run / 'checkpoints'}, then resume with `--ckpt_path last` (the previous "
        "checkpoint there is intact)."
    )
    assert {name: snapshot(run)[name] for name in before} == before


def test_image_folder_without_a_readable_image(tmp_path, capsys):
    images = tmp_path / "photos"
    images.mkdir()
    (images / "cat.png").write_bytes(b"not a png")
    (images / "notes.txt").write_text("hello")
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("an earlier file")
    before = snapshot(run)
    with pytest.warns(UserWarning, match="Skipped 2 unreadable or non-image file"):
        code = fit(
            *DDPM,
            "--run_dir",
            str(run),
            "--data",
            "datamodules.images.ImageFolderDataModule",
            "--data.data_dir",
            str(images),
            "--data.image_size",
            "32",
            "--data.channels",
            "1",
        )
    assert code == 2
    assert last_error(capsys).startswith(f"paradis: error: No readable image in {images}")
    assert snapshot(run) == before


def test_data_file_that_is_not_text(tmp_path, capsys):
    from text_fixtures import make_tiny_distilbert

    tiny = make_tiny_distilbert(tmp_path / "tiny")
    bad = tmp_path / "reviews.csv"
    bad.write_bytes(b"text,label\n\xff\xfe great film,pos\n")
    run = tmp_path / "run"
    run.mkdir()
    before = snapshot(run)
    assert (
        fit(
            "--config",
            "tests/configs/text_tiny.yaml",
            "--model.model_name_or_path",
            str(tiny),
            "--data.data_dir",
            str(tmp_path / "data"),
            "--data.train_file",
            str(bad),
            "--run_dir",
            str(run),
        )
        == 2
    )
    assert last_error(capsys).startswith(f"paradis: error: {bad} is not UTF-8 text")
    assert snapshot(run) == before
