"""DDP on every task with 2 CPU processes on gloo, and 2 "nodes" through torchrun (issue 13, items 6-7).

Each rank records a hash of every training sample it sees and a fingerprint of its weights and EMA at the end
(tests/probe_callbacks.py). Every DDP start costs ~6 s: the runs are few and tiny."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_paradis
from resume_tools import DDPM, ckpt, differences

DDP = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
# One intra-op thread everywhere: the thread count changes float sums, and torchrun and Lightning's own launcher
# would otherwise pick different counts (then the two-node run differs from the two-process one by ~1e-9).
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p),
}
MNIST_DDP = [
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
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
]


def paradis(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    """`paradis ARGS` with rank 0 in a child of the warm server (conftest.run_paradis); rank 1 is a real process."""
    proc = run_paradis(*args, env=ENV, check=False)
    assert proc.returncode == code, proc.stderr[-5000:]
    return proc


def probes(run: Path) -> list[str]:
    return [
        "--trainer.callbacks+=probe_callbacks.RecordSamples",
        "--trainer.callbacks.path",
        str(run.parent / "samples"),
        "--trainer.callbacks+=probe_callbacks.RecordWeights",
        "--trainer.callbacks.path",
        str(run.parent / "weights"),
    ]


def per_rank(prefix: Path) -> list[dict]:
    return [json.loads(Path(f"{prefix}.rank{rank}.json").read_text()) for rank in (0, 1)]


def assert_sharded(run: Path, epochs: int) -> None:
    """Each rank trained on its own share: equal sizes, no sample twice in an epoch, within or across ranks."""
    first, second = per_rank(run.parent / "samples")
    assert sorted(first) == sorted(second) == [str(e) for e in range(epochs)]
    for epoch in first:
        a, b = first[epoch], second[epoch]
        assert len(a) == len(b) > 0 and len(set(a)) == len(a) and len(set(b)) == len(b)
        assert not set(a) & set(b), f"epoch {epoch}: {len(set(a) & set(b))} samples on both ranks"


def assert_rank_zero_wrote(run: Path, fits: int) -> None:
    """One event file per `fit`, one config, the two checkpoints: nothing written twice by rank 1."""
    names = sorted(p.name for p in run.iterdir() if p.is_file())
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == fits, names
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.fixture(scope="module")
def mnist_ddp(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("mnist_ddp") / "run"
    paradis("fit", *MNIST_DDP, *DDP, "--run_dir", str(run), *probes(run))
    return run


def test_mnist_ddp_shards_the_data(mnist_ddp):
    assert ckpt(mnist_ddp / "checkpoints" / "last.ckpt")["global_step"] == 8  # 2048/2 per rank, limited to 8 batches
    assert_sharded(mnist_ddp, epochs=1)
    assert_rank_zero_wrote(mnist_ddp, fits=1)
    first, second = per_rank(mnist_ddp.parent / "weights")
    assert first["module"] == second["module"]  # gradients averaged: the ranks stay in step


def test_two_nodes_through_torchrun_train_like_two_processes(mnist_ddp, tmp_path):
    """`torchrun --nnodes 2 --node_rank R` on 127.0.0.1, one process per "node", `--trainer.num_nodes 2`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(rank),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(port),
                "-m",
                "apps.cli",
                "fit",
                *MNIST_DDP,
                "--trainer.accelerator",
                "cpu",
                "--trainer.strategy",
                "ddp",
                "--trainer.devices",
                "1",
                "--trainer.num_nodes",
                "2",
                "--run_dir",
                str(run),
                *probes(run),
            ],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    assert_sharded(run, epochs=1)
    assert_rank_zero_wrote(run, fits=1)
    assert per_rank(run.parent / "samples") == per_rank(mnist_ddp.parent / "samples")  # the same shards
    assert differences(ckpt(run / "checkpoints" / "last.ckpt"), ckpt(mnist_ddp / "checkpoints" / "last.ckpt")) == []


def test_ddpm_ddp_one_ema_and_exact_resume(tmp_path):
    """2 epochs straight vs. SIGTERM in the middle of epoch 1 and `--ckpt_path last`, both on 2 processes."""
    ddpm = [*DDPM, *DDP, "--data.hflip", "false"]
    straight, resumed = tmp_path / "straight" / "run", tmp_path / "resumed" / "run"
    paradis("fit", *ddpm, "--run_dir", str(straight), *probes(straight))
    assert_sharded(straight, epochs=2)
    assert_rank_zero_wrote(straight, fits=1)
    first, second = per_rank(straight.parent / "weights")
    assert first == second and first["average"]  # one EMA: the same on both ranks
    proc = paradis(
        "fit",
        *ddpm,
        "--run_dir",
        str(resumed),
        "--trainer.callbacks+=probe_callbacks.SignalAt",
        "--trainer.callbacks.step",
        "4",
        code=143,
    )
    assert "paradis: stopped by SIGTERM at epoch 1, step 4" in proc.stderr
    paradis("fit", *ddpm, "--run_dir", str(resumed), "--ckpt_path", "last")
    assert_rank_zero_wrote(resumed, fits=2)
    assert differences(ckpt(straight / "checkpoints" / "last.ckpt"), ckpt(resumed / "checkpoints" / "last.ckpt")) == []


def test_text_ddp_shards_length_grouped_batches(tmp_path):
    from text_fixtures import make_tiny_distilbert

    tiny = make_tiny_distilbert(tmp_path / "tiny")
    run = tmp_path / "text" / "run"
    paradis(
        "fit",
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        str(tiny),
        "--data.data_dir",
        str(tmp_path / "data"),
        *DDP,
        "--run_dir",
        str(run),
        *probes(run),
    )
    assert_sharded(run, epochs=1)
    assert_rank_zero_wrote(run, fits=1)
