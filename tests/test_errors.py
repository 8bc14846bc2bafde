"""One sentence for every CLI error (issue 17, items 5 and 6): exit code 2, one line that starts with
`paradis: error:` on a line of its own, no traceback (PARADIS_DEBUG=1 shows it); every YAML the CLI or the lab
reads is read strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.cli import main
from paradis.yaml_files import read_yaml

ROOT = Path(__file__).resolve().parents[1]
MNIST = [
    "fit",
    "--config",
    "configs/mnist.yaml",
    "--data.download",
    "false",
    "--data.train_subset",
    "256",
    "--data.val_size",
    "128",
    "--trainer.max_steps",
    "2",
]


def paradis(capsys, *args: str) -> tuple[int, str]:
    """`paradis ARGS` in this process: (exit code, the one line of stderr that says what is wrong)."""
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exc:
        mp.setattr("sys.argv", ["paradis"])
        main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "paradis: error:" in line]
    assert len(lines) == 1 and lines[0].startswith("paradis: error: "), err[-2000:]
    return exc.value.code, lines[0].removeprefix("paradis: error: ")


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("configs/**/*.yaml")) + sorted(ROOT.glob("tests/configs/*.yaml")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_shipped_yaml_reads_strictly(path):
    assert isinstance(read_yaml(path), dict)


def test_config_errors(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert paradis(capsys, "fit", "--config", str(missing)) == (
        2,
        f"Config file {missing} does not exist; check the path (the configs are in configs/).",
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  max_epochs: 1\n  callbacks: [a,\nmodel: {}\n")
    code, line = paradis(capsys, "fit", "--config", str(broken))
    assert (
        code == 2 and line.startswith(f"Config file {broken} is not valid YAML at line 5") and "fix its syntax" in line
    )
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "checkpoint:\n  every_n_minutes: 10\ntrainer:\n  max_epochs: 1\ncheckpoint:\n  every_n_minutes: 15\n"
    )
    assert paradis(capsys, "fit", "--config", str(twice)) == (
        2,
        f"Config file {twice}: the key 'checkpoint' is written twice (lines 1 and 5); keep one of them.",
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text("trainer:\n  max_epochs: 1\n  max_epochs: 2\n")
    assert paradis(capsys, "fit", "--config", str(nested))[1].endswith(
        "the key 'max_epochs' is written twice (lines 2 and 3); keep one of them."
    )


@pytest.mark.parametrize(
    "args, sentence",
    [
        (
            ["--model.lrr", "0.1"],
            "Unknown option --model.lrr; did you mean --model.lr? (MNISTClassifier takes no such option; "
            "`--help` lists the options).",
        ),
        (
            ["--data.batchsize", "4"],
            "Unknown option --data.batchsize; did you mean --data.batch_size? (MNISTDataModule takes "
            "no such option; `--help` lists the options).",
        ),
        (
            ["--trainer.max_epoch", "3"],
            "Unknown option --trainer.max_epoch; did you mean --trainer.max_epochs? (`--help` lists the options).",
        ),  # no abbreviations: it is not silently max_epochs
        (["--trainer.max_epochs", "abc"], "--trainer.max_epochs expects an int, got 'abc'; fix the value."),
        (
            ["--trainer.max_time", "00:00:00:4"],
            "--trainer.max_time '00:00:00:4' is not a duration; write DD:HH:MM:SS with "
            "two digits each, e.g. 00:01:30:00 for 90 minutes.",
        ),
    ],
)
def test_option_errors(tmp_path, capsys, args, sentence):
    assert paradis(capsys, *MNIST, "--run_dir", str(tmp_path / "run"), *args) == (2, sentence)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "suffix, broken, problem",
    [
        (".jsonl", '{"text": "fine", "label": "positive"', "is not valid JSON"),
        (".csv", 'x,"unclosed', "is not valid CSV"),
    ],
)
def test_a_broken_data_line_names_the_file_and_its_real_line(tmp_path, capsys, suffix, broken, problem):
    rows = [{"text": f"review number {i}", "label": "positive" if i % 2 else "negative"} for i in range(60)]
    if suffix == ".jsonl":
        lines = [json.dumps(row) for row in rows]
        lines[40] = broken  # line 41
    else:
        lines = ["text,label"] + [f"{r['text']},{r['label']}" for r in rows]
        lines[41] = broken + "\n" + "\n".join(lines[42:44])  # an unclosed quote opened on line 42
        del lines[42:44]
    data = tmp_path / f"reviews{suffix}"
    data.write_text("\n".join(lines) + "\n")
    code, line = paradis(
        capsys,
        "fit",
        "--config",
        "tests/configs/text_tiny.yaml",
        "--data.train_file",
        str(data),
        "--data.data_dir",
        str(tmp_path / "text"),
        "--run_dir",
        str(tmp_path / "run"),
    )
    assert code == 2 and line.startswith(f"{data} line {41 if suffix == '.jsonl' else 42} {problem}"), line


def test_the_error_after_a_progress_bar_is_on_its_own_line(tmp_path, capsys):
    code, line = paradis(
        capsys,
        *MNIST,
        "--run_dir",
        str(tmp_path / "run"),
        "--model.optimizer",
        "sgd",
        "--model.lr",
        "1e30",
        "--trainer.enable_progress_bar",
        "true",
    )
    assert code == 1 and line.startswith("the loss became NaN")


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PARADIS_DEBUG", "1")
    monkeypatch.setattr("sys.argv", ["paradis"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["fit", "--config", str(tmp_path / "nope.yaml")])


def test_lab_file_with_a_key_written_twice(tmp_path):
    from apps.lab.spec import read_spec

    lab = tmp_path / "lab.yaml"
    lab.write_text("base: [configs/mnist.yaml]\nvariants: {}\nbase: [configs/mnist_cnn.yaml]\n")
    with pytest.raises(
        ValueError, match=r"Lab file .*lab.yaml: the key 'base' is written twice \(lines 1 and 3\); keep one"
    ):
        read_spec(lab)
