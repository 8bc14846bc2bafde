"""Start-up against the library floor, side by side (issue 12, item 1).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/startup.py [--repeats 5] [--config configs/mnist.yaml]

Fresh interpreters, measured from the moment the parent starts them:
  floor       `python -c "import lightning.pytorch"` until the import has returned (the process then ends
              with `os._exit`, as the first-step run does): the floor for the first step;
  floor+exit  the same, until the process has exited normally: the floor for `--help`;
  --help      `paradis fit --help` (until the process exits);
  first step  `paradis fit --config CONFIG` until Lightning calls `on_train_batch_start` for the first
              batch (a callback appended with `--trainer.callbacks+=` reports the time and ends the process).
The runs interleave (floor, help, step, floor, ...) so a load change hits all three alike; the best of
`--repeats` is reported, and the gaps above the floor are the figures the issue sets targets for
(first step <= floor + 1 s, --help <= floor + 0.5 s). Each run's CPU time (user + system, from
`getrusage(RUSAGE_CHILDREN)`) is reported too: on a machine shared with other jobs the wall clock swings
by 2x between runs, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]


class ExitAtFirstStep(Callback):
    """Print the wall clock at the first training batch and end the process (used by the child)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        print(f"FIRST_STEP_AT {time.time():.6f}", flush=True)
        os._exit(0)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict, marker: str | None) -> tuple[float, float]:
    """(wall seconds from spawn to `marker` on stdout, or to exit when `marker` is None; CPU seconds of the child)."""
    cpu = children_cpu()
    start = time.time()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    end = time.time()
    cpu = children_cpu() - cpu
    if marker is None:
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return end - start, cpu
    for line in result.stdout.splitlines():  # (a progress bar may have written "\r..." before the marker)
        if marker in line:
            return float(line.split(marker)[1].split()[0]) - start, cpu
    raise SystemExit(f"{' '.join(command)} never reached its first step:\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--extra", nargs="*", default=[], help="more `paradis fit` arguments for the first-step run")
    args = parser.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    paradis = [sys.executable, "-m", "apps.cli"]
    results: dict[str, list[tuple[float, float]]] = {"floor": [], "floor_exit": [], "help": [], "first_step": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            run_dir = Path(tmp) / f"run{repeat}"
            results["floor"].append(
                timed(
                    [
                        sys.executable,
                        "-c",
                        "import os, time, lightning.pytorch; print('IMPORTED', time.time(), flush=True); os._exit(0)",
                    ],
                    env,
                    "IMPORTED",
                )
            )
            results["floor_exit"].append(timed([sys.executable, "-c", "import lightning.pytorch"], env, None))
            results["help"].append(timed(paradis + ["fit", "--help"], env, None))
            step = paradis + [
                "fit",
                "--config",
                args.config,
                "--run_dir",
                str(run_dir),
                "--trainer.callbacks+=benchmarks.startup.ExitAtFirstStep",
                *args.extra,
            ]
            results["first_step"].append(timed(step, env, "FIRST_STEP_AT"))
            print(
                f"repeat {repeat}: "
                + ", ".join(f"{k} {v[-1][0]:.2f}s (CPU {v[-1][1]:.2f}s)" for k, v in results.items()),
                flush=True,
            )
    wall = {k: min(w for w, _ in v) for k, v in results.items()}
    cpu = {k: min(c for _, c in v) for k, v in results.items()}
    load = os.getloadavg()[0]
    print(f"\nStart-up, best of {args.repeats} (load average {load:.1f} at the end, {os.cpu_count()} CPUs):")
    print("| run | wall s | above the floor | CPU s | above the floor |\n|---|---|---|---|---|")
    names = {
        "floor": '`python -c "import lightning.pytorch"` to the import (floor)',
        "first_step": f"`paradis fit --config {args.config}` to its first step",
        "floor_exit": '`python -c "import lightning.pytorch"` to its exit (floor+exit)',
        "help": "`paradis fit --help` to its exit",
    }
    floors = {"first_step": "floor", "help": "floor_exit"}
    for key, name in names.items():
        ref = floors.get(key)
        gap = (f"{wall[key] - wall[ref]:+.2f}", f"{cpu[key] - cpu[ref]:+.2f}") if ref else ("–", "–")
        print(f"| {name} | {wall[key]:.2f} | {gap[0]} | {cpu[key]:.2f} | {gap[1]} |")


if __name__ == "__main__":
    main()
