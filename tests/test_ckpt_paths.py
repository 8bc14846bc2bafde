"""`validate`, `test` and `predict` on every task, and every way of naming the checkpoint: the run's default
(best, else last), `best`, `last`, an explicit file in the run, and one elsewhere (whose saved model arguments
LightningCLI re-reads). How a name resolves does not depend on the subcommand (apps/cli.py `_resolve_ckpt_path`
has one branch for all three), so each name is run once, and each subcommand at least once, per task."""

from __future__ import annotations

import pytest

from apps.cli import main

TASKS = {
    "mnist": [
        "--config",
        "configs/mnist.yaml",
        "--data.download",
        "false",
        "--data.train_subset",
        "256",
        "--data.val_size",
        "128",
        "--model.hidden_sizes",
        "[16]",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.limit_predict_batches",
        "1",
        "--trainer.max_epochs",
        "1",
    ],
    "ddpm": [
        "--config",
        "tests/configs/ddpm_tiny.yaml",
        "--trainer.max_epochs",
        "1",
        "--data.num_samples",
        "2",
        "--model.sample_steps",
        "2",
        "--trainer.limit_test_batches",
        "1",
    ],
    "text": [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.limit_predict_batches",
        "1",
    ],
}
COMMON = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def paradis(*args: str) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["paradis"])
        try:
            main(list(args))
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_subcommand_takes_every_checkpoint_name(task, tmp_path, capsys):
    run, extra = tmp_path / task, [*TASKS[task], *COMMON]
    if task == "text":
        extra += ["--data.data_dir", str(tmp_path / "text")]
    assert paradis("fit", *extra, "--run_dir", str(run)) == 0
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    copy = tmp_path / "elsewhere.ckpt"  # an explicit file outside the run folder
    copy.write_bytes(last.read_bytes())
    for subcommand, name in (
        ("validate", None),
        ("validate", "best"),
        ("test", "last"),
        ("test", str(best)),
        ("predict", str(copy)),
    ):
        args = [subcommand, *extra, "--run_dir", str(run)] + ([] if name is None else ["--ckpt_path", name])
        code = paradis(*args)
        err = capsys.readouterr().err
        assert code == 0, (subcommand, name, err[-2000:])
