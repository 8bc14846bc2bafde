"""Where a run's `paradis fit` + `paradis test` execute: a warm forked child, or two fresh processes.

Warm (the default): `paradis-lab` starts one multiprocessing *forkserver* that imports everything a
variant needs once (`apps.lab.runner.warm`); each run is a fresh child forked from it, which runs `fit` and
then `test` in-process through the same `apps.cli.main` the `paradis` script calls. A run therefore
starts in milliseconds instead of two interpreter start-ups, and nothing leaks from one run into the
next (each child exits after its run). Isolated (`--isolated`): the child runs the two `paradis`
commands of the report as subprocesses, exactly as a user would.

Either way the child exits 0 when both stages passed, 10 + stage index when one failed; the stage's
output is in `<run folder>/<stage>.log`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

STAGES = ("fit", "test")
FAILED_CODE = 10  # + index of the stage that failed
CPU_FILE = "cpu_time.json"
PARENT_ENV = "PARADIS_LAB_PARENT"


def die_with_parent(parent: int | None = None) -> None:
    """Linux: this process gets SIGKILL when its parent dies, so a killed lab or search worker leaves no
    orphan run behind; it exits now if `parent` (the expected parent's pid) is already gone. No-op elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if parent is not None and os.getppid() != parent:
            os._exit(1)


def paradis_bin() -> str:
    exe = Path(sys.executable).parent / "paradis"
    return str(exe) if exe.exists() else "paradis"


def call_cli(args: list[str]) -> int:
    """`paradis ARGS` in this process; its exit code."""
    import traceback

    from apps.cli import main

    sys.argv = ["paradis"]  # the arguments go in `args`: with both, LightningCLI warns that they may differ
    try:
        main(args)
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the stage's log like an uncaught error in `paradis`
        traceback.print_exc()
        return 1
    return 0


def redirect_output(log_file: Path) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def exit_with(code: int, run_dir: str, hard: bool) -> None:
    """Record this process's CPU time (with its finished subprocesses) in `<run folder>/cpu_time.json`, then exit."""
    times = os.times()
    cpu = {"user_s": times.user + times.children_user, "system_s": times.system + times.children_system}
    (Path(run_dir) / CPU_FILE).write_text(json.dumps(cpu))
    sys.stdout.flush()
    sys.stderr.flush()
    if hard:
        os._exit(code)  # a forked child: skip the parent's atexit handlers
    sys.exit(code)


def run_warm(commands: Sequence[list[str]], run_dir: str, threads: int) -> None:
    """Child process body: every stage in-process (the modules are already imported)."""
    die_with_parent()
    import faulthandler

    import torch

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` writes every thread's stack into the stage's log

    torch.set_num_threads(threads)  # the same intra-op thread count as OMP_NUM_THREADS in the shown command
    os.environ["OMP_NUM_THREADS"] = str(threads)
    for index, (stage, command) in enumerate(zip(STAGES, commands)):
        redirect_output(Path(run_dir) / f"{stage}.log")
        if call_cli(command[1:]) != 0:
            exit_with(FAILED_CODE + index, run_dir, hard=True)
    exit_with(0, run_dir, hard=True)


def run_isolated(commands: Sequence[list[str]], run_dir: str, threads: int) -> None:
    """Child process body: each stage as its own `paradis` process, as the report shows it."""
    die_with_parent()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for index, (stage, command) in enumerate(zip(STAGES, commands)):
        with (Path(run_dir) / f"{stage}.log").open("w") as output:
            proc = subprocess.run(
                [paradis_bin(), *command[1:]],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        if proc.returncode != 0:
            exit_with(FAILED_CODE + index, run_dir, hard=False)
    exit_with(0, run_dir, hard=False)


def warm_context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    """A forkserver context whose server imports `preload` (module names) once."""
    os.environ[PARENT_ENV] = str(os.getpid())  # read by apps.lab.runner.warm in the forkserver
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["apps.lab.runner.warm", *preload])
    return ctx


def launch(
    commands: Sequence[list[str]], run_dir: Path, threads: int, isolated: bool, ctx=None
) -> multiprocessing.Process:
    """Start one run's child; `ctx` is the warm context (None: fork this process, already warm or light)."""
    ctx = ctx or multiprocessing.get_context("fork")
    target = run_isolated if isolated else run_warm
    process = ctx.Process(target=target, args=(list(commands), str(run_dir), threads), daemon=False)
    process.start()
    return process
