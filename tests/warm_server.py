"""A warm fork server for the tests: it imports what the commands import once, then runs each command in a
child forked from it, so a command starts in milliseconds instead of an interpreter start-up (~12 s of imports
on a 2-core machine; the same idea as `paradis-lab`'s warm worker, apps/lab/runner/worker.py). Used by
tests/test_readme.py for the README's commands and by conftest.run_paradis for `paradis` (`python
tests/warm_server.py paradis` imports only what `paradis` needs).

Protocol (one JSON object per line on stdin; answers on stdout):
  {"job": {...}, "wait": true}   -> {"pid": P} then, when the child has exited, {"rc": CODE}
  {"job": {...}, "wait": false}  -> {"pid": P}              (a server the test stops later with a signal)
A job is {"entry": ..., "argv": [...], "cwd": DIR, "env": {...}, "log": FILE[, "err": FILE]}; the entries are
  "script:<module>:<function>"  a console script (`paradis`, `paradis-lab`, `paradis-app`, `tensorboard`)
  "module:<name>"                `python -m <name>`
  "path:<file>"                  `python <file>`
  "code"                         a Python snippet (argv[0] is its text)
The child writes stdout and stderr to `log` (stderr to `err` when given) and exits with the command's exit code.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys

# What `paradis` imports for any task (`python tests/warm_server.py paradis`: conftest.run_paradis's server) ...
PARADIS = (
    "apps.cli",
    "lightning.pytorch",
    "torch.utils.tensorboard",
    "lightning_modules.mnist",
    "lightning_modules.ddpm",
    "lightning_modules.text",
    "datamodules.mnist",
    "datamodules.images",
    "datamodules.text",
    "callbacks.ema",
    "callbacks.sample_grid",
)
# ... and what the README's other commands import too (the default: tests/test_readme.py's server).
WARM = (
    *PARADIS,
    "apps.lab.cli",
    "apps.app.main",
    "apps.export_ddpm",
    "apps.export_text",
    "diffusers",
    "transformers",
    "peft",
    "gradio",
    "gradio_client",
    "tensorboard.main",
)


# -- the client's side (the tests' process) ---------------------------------------------------------------------
def send(server, job: dict, wait: bool) -> int:
    """Ask the warm server `server` (a `subprocess.Popen` with text pipes) to start `job`; the child's pid."""
    server.stdin.write(json.dumps({"job": job, "wait": wait}) + "\n")
    server.stdin.flush()
    return json.loads(server.stdout.readline())["pid"]


def wait_for(server, pid: int, timeout: float) -> int:
    """The exit code of the child `pid` started with `wait=True`; 124 when it ran past `timeout` (then its process
    group is killed, and the server's answer is still read, so the next job's answers stay in step)."""
    ready = select.select([server.stdout], [], [], timeout)[0]
    if not ready:
        os.killpg(pid, signal.SIGKILL)
    rc = json.loads(server.stdout.readline())["rc"]
    return rc if ready else 124


# -- the server's side ------------------------------------------------------------------------------------------
def exit_code(err: SystemExit) -> int:
    return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)


def child(job: dict, server: int) -> int:
    """Run one command in this (forked) process; its exit code."""
    import runpy
    import traceback

    os.setpgid(0, 0)  # its own process group: the test can stop it and whatever it started at once
    from apps.lab.runner.worker import die_with_parent

    die_with_parent(server)  # and it ends with the server (which ends when the test closes its stdin)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    for fds, path in (((1, 2), job["log"]), ((2,), job.get("err"))):
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            for target in fds:
                os.dup2(fd, target)
            os.close(fd)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    entry, argv = job["entry"], job["argv"]
    sys.argv = list(argv)
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m` / `python -c`: the working directory is importable
    try:
        if entry.startswith("script:"):
            _, module, function = entry.split(":")
            result = getattr(importlib.import_module(module), function)()
            return result if isinstance(result, int) else 0
        if entry.startswith("module:"):
            runpy.run_module(entry.split(":", 1)[1], run_name="__main__", alter_sys=True)
        elif entry.startswith("path:"):
            path = entry.split(":", 1)[1]
            sys.path[0] = os.path.dirname(os.path.abspath(path))
            runpy.run_path(path, run_name="__main__")
        else:
            sys.argv = ["-c"]
            exec(compile(argv[0], "<README snippet>", "exec"), {"__name__": "__main__"})
    except SystemExit as err:
        return exit_code(err)
    except BaseException:  # noqa: BLE001 - reported like an uncaught error of the command
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    for name in PARADIS if sys.argv[1:] == ["paradis"] else WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    answer = sys.stdout
    print(json.dumps({"ready": True}), file=answer, flush=True)
    background: set[int] = set()
    parent = os.getpid()
    for line in sys.stdin:
        for done in [p for p in background if os.waitpid(p, os.WNOHANG)[0]]:  # reap stopped servers
            background.discard(done)
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(request["job"], parent)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), file=answer, flush=True)
        if request["wait"]:
            _, status = os.waitpid(pid, 0)
            print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=answer, flush=True)
        else:
            background.add(pid)


if __name__ == "__main__":
    main()
