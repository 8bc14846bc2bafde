"""The README is a test: every command in the fenced code blocks of README.md and docs/*.md runs here, in tiny
form, in document order, in one temporary working directory (tests/readme_commands.py says how each is read and
made tiny; tests/warm_server.py starts them warm). A command that cannot run here is named in
`readme_commands.SKIPPED` with its reason, and nothing else may be skipped.

`paradis-app` launches, the Python snippets that call it and the curl block run last, against the runs the
other commands trained. The tests share the working directory and depend on each other's runs: run the whole
file (`pytest tests/test_readme.py`), not one of them alone.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
import warm_server
from PIL import Image, ImageDraw
from postgres_server import start_server
from readme_commands import (
    ROOT,
    SKIPPED,
    TINY_CATS_SCORE,
    TINY_LAB,
    TINY_PIPELINE,
    TINY_SEARCH,
    Command,
    all_commands,
    configs_of,
    expand,
    option,
    promised_files,
    tiny_paradis_args,
)

BIN = Path(sys.executable).parent
TIMEOUT = 300
APP_PORT = "7860"  # the port the README's clients talk to
# Run-time substitutions (data and addresses that exist only on the README reader's machine):
PHOTOS = ("~/photos/cats", "../shared/data/cats128")  # -> synthetic photos (the shared cats' licence is unknown)
SNIPPET_RUNS = '"/home/me/paradis/runs"'
# A command that needs a run the README only describes in prose: that prose command runs first.
PREREQUISITES = {
    "runs/ddpm_cats32_cpu/checkpoints/last.ckpt": "paradis fit --config configs/ddpm_cats32_cpu.yaml --data.data_dir ../shared/data/cats128",
}
SCRIPTS = {
    ep.name: ep.value
    for ep in entry_points(group="console_scripts")
    if ep.name in ("paradis", "paradis-lab", "paradis-app", "tensorboard")
}
COMMANDS = all_commands()


def section_of(command: Command) -> str:
    """`<doc>:<section>` from the `<!-- section:NAME -->` markers (before the first one: `start`)."""
    lines = (ROOT / command.doc).read_text().splitlines()[: command.line]
    names = [m.group(1) for ln in lines for m in [re.match(r"<!-- section:(\w+) -->", ln)] if m]
    return f"{command.doc}:{names[-1] if names else 'start'}"


def is_app_client(command: Command) -> bool:
    """The app and what talks to it: run last, against every run the other commands made."""
    return (
        "paradis-app" in command.text.split("\n")[0]
        if command.lang == "shell"
        else "gradio_client" in command.text or "gradio_api" in command.text
    )


def sections() -> list[str]:
    seen: list[str] = []
    for command in COMMANDS:
        if command.name not in SKIPPED and not is_app_client(command) and section_of(command) not in seen:
            seen.append(section_of(command))
    return seen + [f"{doc}:app" for doc in dict.fromkeys(c.doc for c in COMMANDS if is_app_client(c))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the working directory and the warm server ---------------------------------------------------------------
@dataclass
class Workspace:
    cwd: Path
    env: dict
    server: subprocess.Popen
    ran: dict = field(default_factory=dict)  # command text -> where it ran first
    results: dict = field(default_factory=dict)  # command name -> "ran" / "failed: ..."
    servers: list = field(default_factory=list)  # background pids
    ports: dict = field(default_factory=dict)  # README port -> real port of the app that answers it
    postgres: object = None  # the throwaway PostgreSQL server of `--storage postgresql://...` (started on demand)
    logs: int = 0

    def log_file(self) -> Path:
        self.logs += 1
        (self.cwd / ".logs").mkdir(exist_ok=True)
        return self.cwd / ".logs" / f"{self.logs:03d}.log"

    def run(self, entry: str, argv: list[str], env: dict | None = None, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Run a command in a child of the warm server; (exit code, 124 past `timeout`; its output)."""
        log = self.log_file()
        job = {"entry": entry, "argv": argv, "cwd": str(self.cwd), "env": {**self.env, **(env or {})}, "log": str(log)}
        rc = warm_server.wait_for(self.server, warm_server.send(self.server, job, wait=True), timeout)
        return rc, log.read_text(errors="replace")

    def start(self, entry: str, argv: list[str]) -> tuple[int, Path]:
        log = self.log_file()
        pid = warm_server.send(
            self.server,
            {"entry": entry, "argv": argv, "cwd": str(self.cwd), "env": self.env, "log": str(log)},
            wait=False,
        )
        self.servers.append(pid)
        return pid, log

    def stop(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if pid in self.servers:
            self.servers.remove(pid)

    def subprocess(self, argv: list[str], env: dict | None = None, timeout: float = TIMEOUT) -> tuple[int, str]:
        proc = subprocess.run(
            argv,
            cwd=self.cwd,
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout + proc.stderr


def make_inputs(cwd: Path) -> None:
    """The files the README's commands read: my_digits/, digit.jpg, reviews.txt, a folder of cat photos."""
    from datamodules.mnist_sources import load_bundled

    test_images = load_bundled()[2]
    (cwd / "my_digits").mkdir()
    for i in range(3):
        Image.fromarray(test_images[i].numpy()).resize((64, 64)).save(cwd / "my_digits" / f"{i}.png")
    Image.fromarray(255 - test_images[0].numpy()).resize((112, 112)).convert("RGB").save(
        cwd / "digit.jpg"
    )  # a 7, ink on paper
    (cwd / "reviews.txt").write_text("a great , wonderful film\nboring , awful mess\n")
    photos = cwd / "photos" / "cats"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    # Synthetic "photos": a pale blob with ears on a coloured ground, various sizes. 16 of them: 2 held out, the
    # fewest that FID/KID compare (`paradis test`), and few for the scorer's Inception features.
    for i in range(16):
        w, h = int(rng.integers(40, 72)), int(rng.integers(40, 72))
        image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 120, 3)))
        draw = ImageDraw.Draw(image)
        cx, cy, r = w // 2 + int(rng.integers(-5, 6)), h // 2 + int(rng.integers(-5, 6)), min(w, h) // 4
        fur = tuple(int(c) for c in rng.integers(140, 255, 3))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur)
        draw.polygon([(cx - r, cy - r // 2), (cx - r // 2, cy - 2 * r), (cx, cy - r)], fill=fur)
        draw.polygon([(cx + r, cy - r // 2), (cx + r // 2, cy - 2 * r), (cx, cy - r)], fill=fur)
        image.save(photos / f"cat_{i:02d}.png")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    for name in ("configs", "benchmarks", "docs", "tests"):  # the repository as a user's checkout has it
        (cwd / name).symlink_to(ROOT / name)
    make_inputs(cwd)
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONWARNINGS": "ignore",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "warm_server.py")],
        cwd=cwd,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert json.loads(server.stdout.readline()) == {"ready": True}
    workspace = Workspace(cwd, env, server)
    yield workspace
    for pid in list(workspace.servers):
        workspace.stop(pid)
    if workspace.postgres is not None:
        workspace.postgres.stop()
    server.stdin.close()
    server.wait(timeout=60)


# -- running one command ---------------------------------------------------------------------------------------
def substituted(text: str, ws: Workspace) -> str:
    for photos in PHOTOS:
        text = text.replace(photos, str(ws.cwd / "photos" / "cats"))
    return text


def split_env(argv: list[str]) -> tuple[dict, list[str]]:
    env = {}
    while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
        name, value = argv[0].split("=", 1)
        env[name] = value
        argv = argv[1:]
    return env, argv


def tail(output: str, n: int = 40) -> str:
    return "\n".join(output.splitlines()[-n:])


def run_command(ws: Workspace, command: Command) -> None:
    """Run one README command in tiny form and check what it promises; raises AssertionError if it fails."""
    if command.lang == "python":
        run_python(ws, command)
    elif command.lang == "script":
        run_script(ws, command)
    else:
        env, argv = split_env(expand(substituted(command.text, ws), ws.cwd, {**os.environ, **ws.env}))
        env = {k: v for k, v in env.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}  # the tests stay offline
        run_argv(ws, argv, env, command)


def run_argv(ws: Workspace, argv: list[str], env: dict, command: Command) -> None:
    program = Path(argv[0]).name
    if program == "make":
        return run_make(ws, argv[1:], command)
    if program in ("python", "python3"):
        return run_python_program(ws, argv[1:], env, command)
    if program == "tensorboard":
        return run_tensorboard(ws, argv[1:])
    if program == "paradis-app":
        return run_app(ws, argv[1:])
    if program == "paradis-lab":
        return run_lab(ws, argv[1:], env)
    if program == "paradis":
        return run_paradis(ws, argv[1:], env, command)
    raise AssertionError(
        f"the harness does not know how to run `{program}` in tiny form: teach "
        "tests/test_readme.py, or name the command in readme_commands.SKIPPED with its reason"
    )


def entry(program: str) -> str:
    return "script:" + SCRIPTS[program]


def checked(rc: int, output: str, what: str) -> str:
    assert rc == 0, f"`{what}` exited with {rc}:\n{tail(output)}"
    return output


def run_paradis(ws: Workspace, args: list[str], env: dict, command: Command) -> None:
    for prerequisite, prose in PREREQUISITES.items():
        if any(prerequisite in a for a in args) and not (ws.cwd / prerequisite).exists():
            run_command(ws, Command("(prose)", 0, "shell", prose))
    full = args + tiny_paradis_args(args, ws.cwd)
    what = "paradis " + shlex.join(full)
    sub, configs = full[0], configs_of(full)
    run_dir = ws.cwd / (option(full, "--run_dir") or f"runs/{Path(configs[-1]).stem}")
    resumed = sub == "fit" and option(full, "--ckpt_path") == "last"
    before = step_of(run_dir / "checkpoints" / "last.ckpt") if resumed else 0
    # argv[0] is the real script: Lightning starts a DDP run's other ranks as `python argv[0] ARGS`
    rc, output = ws.run(entry("paradis"), [str(BIN / "paradis"), *full], env)
    checked(rc, output, what)
    if "--print_config" in full:
        assert "trainer:" in output and "model:" in output, output[-2000:]
    elif sub == "fit":  # trained (a resume: went on from where the run stopped)
        assert (run_dir / "config.yaml").is_file()
        after = step_of(run_dir / "checkpoints" / "last.ckpt")
        assert after > before, f"{what}: last.ckpt holds step {after}, {before} before"
    elif sub in ("validate", "test"):
        assert f"{'val' if sub == 'validate' else 'test'}/" in output, f"{what} printed no metric:\n{tail(output)}"
        for metric in re.findall(r"\b(?:val|test)/\w+", command.comment):  # `# test/loss, test/fid, test/kid`
            assert metric in output, f"{command.where}: `{command.text}` says it reports {metric}:\n{tail(output)}"
    elif sub == "predict":
        if (run_dir / "predictions.csv").exists() and (ws.cwd / "runs").exists():
            rows = list(csv.DictReader(open(run_dir / "predictions.csv")))
            path = option(full, "--data.predict_path") or option(full, "--data.predict_file")
            if path and (ws.cwd / path).is_dir():
                assert len(rows) == len(list((ws.cwd / path).iterdir())), rows
            elif path:
                assert len(rows) == len((ws.cwd / path).read_text().splitlines()), rows
        else:
            grid = run_dir / "predictions" / "grid.png"
            assert grid.is_file() and len(list(grid.parent.glob("sample_*.png"))) == 4, f"{what}: no {grid}"
    check_promises(ws, command)


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]


def check_promises(ws: Workspace, command: Command) -> None:
    for promised in promised_files(command.comment):
        assert (ws.cwd / promised).exists(), f"{command.where}: `{command.text}` says it writes {promised}"


def run_lab(ws: Workspace, args: list[str], env: dict) -> None:
    search = any(Path(a).stem == "search" for a in args if a.endswith(".yaml"))
    storage = option(args, "--storage") or ""
    if storage.startswith("postgresql"):  # the README's database -> one on a throwaway server, same user and password
        if ws.postgres is None:
            ws.postgres = start_server(ws.cwd / ".postgres")  # a failure under CI where PostgreSQL is missing
            if ws.postgres is None:
                print(f"not run: PostgreSQL is not installed here: paradis-lab {shlex.join(args)}")
                return
            ws.postgres.database("paradis")
        args = [ws.postgres.url("paradis", "paradis", "PASSWORD") if a == storage else a for a in args]
    full = args + TINY_LAB + (TINY_SEARCH if search else [])
    checked(*ws.run(entry("paradis-lab"), ["paradis-lab", *full], env), "paradis-lab " + shlex.join(full))
    runs_dir = ws.cwd / (option(full, "--runs-dir") or "runs/lab")
    labs = [Path(a).stem for a in args if a.endswith(".yaml")]
    for lab in labs:
        assert (runs_dir / lab / "report.md").is_file(), f"no report for {lab}"
    if search and storage.startswith("postgresql"):
        import optuna

        study = optuna.load_study(study_name="search", storage=option(full, "--storage"))
        assert sum(t.state.is_finished() for t in study.trials) >= 2, study.trials
    elif search:
        assert (runs_dir / "search" / "study.db").is_file()
    if len(labs) > 1:
        assert (runs_dir / "course.html").is_file() and (runs_dir / "course.md").is_file()


def run_python_program(ws: Workspace, args: list[str], env: dict, command: Command) -> None:
    if args[0] == "-m":
        module, rest = args[1], args[2:]
        checked(*ws.run(f"module:{module}", [module, *rest], env), "python " + shlex.join(args))
        out = ws.cwd / option(rest, "--out")
        if module == "apps.export_ddpm":
            assert (out / "model_index.json").is_file() and (out / "unet").is_dir()
        elif module == "apps.export_text":
            assert (out / "adapter" / "adapter_config.json").is_file()
            assert ("--merged" not in rest) or (out / "merged" / "config.json").is_file()
        return
    script, rest = args[0], args[1:]
    if Path(script).name == "cats_score.py":
        for prerequisite, prose in PREREQUISITES.items():
            if prerequisite in rest and not (ws.cwd / prerequisite).exists():
                run_command(ws, Command("(prose)", 0, "shell", prose))
        rest = rest + TINY_CATS_SCORE
    checked(*ws.run(f"path:{script}", [script, *rest], env), "python " + shlex.join([script, *rest]))
    if Path(script).name == "cats_score.py":
        scores = json.loads((ws.cwd / (option(rest, "--out") or "runs/cats_score/scores.json")).read_text())
        assert scores, scores
    check_promises(ws, command)


def run_make(ws: Workspace, args: list[str], command: Command) -> None:
    """`make TARGET`: its recipe as `make -n` prints it, each paradis/python line run in tiny form."""
    proc = subprocess.run(["make", "-n", "-s", "-C", str(ROOT), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    target = [a for a in args if "=" not in a][0]
    recipe = [line for line in proc.stdout.splitlines() if "/paradis" in line.split(" ")[0] or "paradis " in line]
    recipe = [line for line in recipe if "pip install" not in line and "python -c" not in line]
    assert recipe, f"make {target}: no paradis command in its recipe:\n{proc.stdout}"
    for line in recipe:
        env, argv = split_env(shlex.split(line))
        env = {k: v for k, v in env.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
        run_argv(ws, argv, env, command)


def wait_http(url: str, log: Path, timeout: float = 120) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return answer.read()
        except OSError:
            if time.time() > deadline:
                raise AssertionError(
                    f"{url} did not answer in {timeout} s:\n{tail(log.read_text(errors='replace'))}"
                ) from None
            time.sleep(0.5)


def run_tensorboard(ws: Workspace, args: list[str]) -> None:
    port = str(free_port())
    pid, log = ws.start(entry("tensorboard"), ["tensorboard", *args, "--port", port])
    try:
        logdir = ws.cwd / option(args, "--logdir")
        expected = {str(p.parent.relative_to(logdir)) for p in logdir.rglob("events.out.tfevents.*")}
        deadline = time.time() + 60
        while True:  # TensorBoard finds the runs in the background after it starts serving
            runs = json.loads(wait_http(f"http://127.0.0.1:{port}/data/runs", log))
            if (expected and expected <= set(runs)) or time.time() > deadline:
                break
            time.sleep(1)
        assert expected and expected <= set(runs), f"TensorBoard lists {runs}, not {sorted(expected - set(runs))}"
    finally:
        ws.stop(pid)


def run_app(ws: Workspace, args: list[str]) -> None:
    readme_port = option(args, "--port") or APP_PORT
    port = str(free_port())
    pid, log = ws.start(entry("paradis-app"), ["paradis-app", *args, "--port", port])
    config = json.loads(wait_http(f"http://127.0.0.1:{port}/config", log))
    found = dict(re.findall(r"paradis-app: (.+?): (\d+) checkpoint\(s\)", log.read_text()))
    runs_dir = ws.cwd / (option(args, "--runs-dir") or "runs")
    expected = {str(p.resolve()) for p in runs_dir.rglob("checkpoints/*.ckpt")}
    for path in [ws.cwd / a for a in args if a.endswith(".ckpt")]:
        expected.add(str(path.resolve()))
    listed = json.dumps(config)
    missing = [p for p in expected if p not in listed]
    assert found and not missing, (
        f"paradis-app {shlex.join(args)}: {found}, not offered: {missing}\n{tail(log.read_text())}"
    )
    if readme_port not in ws.ports:
        ws.ports[readme_port] = port  # the first app on a README port answers the README's clients
    else:
        ws.stop(pid)


def run_python(ws: Workspace, command: Command) -> None:
    code = command.text.replace(SNIPPET_RUNS, json.dumps(str(ws.cwd / "runs")))
    for readme_port, port in ws.ports.items():
        code = code.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
    if "DDPMPipeline" in code:
        for old, new in TINY_PIPELINE.items():
            code = code.replace(old, new)
        code += "\nassert len(images) == 2 and images[0].size == (32, 32), images\n"
    if "gradio_client" in code:  # the last answers; the digit's is printed
        code += (
            "\nimport os\nassert os.path.isfile(seen) and os.path.isfile(png) and os.path.isfile(shown), (seen, shown, png)"
            "\nassert label['label'] in ('negative', 'positive') and len(table['data']) == 2, (label, table)\n"
        )
    output = checked(*ws.run("code", [code]), command.name)
    if "gradio_client" in code:
        assert re.search(r"^\d \S+\.png$", output, re.M), f"no digit and 28x28 PNG printed:\n{tail(output)}"


def run_script(ws: Workspace, command: Command) -> None:
    script = command.text
    for readme_port, port in ws.ports.items():
        script = script.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
    output = checked(*ws.subprocess(["bash", "-e", "-o", "pipefail", "-c", script]), command.name)
    if "gradio_api/call/" in script:
        assert "event: complete" in output and '"label"' in output, output[-2000:]


def in_run_order(commands: list[Command]) -> list[Command]:
    """Document order, except that a `paradis-lab` command over several lab files runs before the first
    single-file one of its section: the single-file commands then read its finished runs back (the lab is
    resumable, and the runs' commands are the same) instead of starting a worker each to train them again."""
    order = list(commands)
    for command in commands:
        if command.lang == "shell" and command.text.startswith("paradis-lab ") and "{" in command.text:
            first = next(c for c in order if c.text.startswith("paradis-lab ") and section_of(c) == section_of(command))
            order.remove(command)
            order.insert(order.index(first), command)
    return order


# -- the tests -------------------------------------------------------------------------------------------------
def test_every_command_runs_or_is_skipped_by_name():
    """Only the commands named in SKIPPED are skipped, each of them is still in the docs, and every other one has
    a way to run here."""
    names = [c.name for c in COMMANDS]
    assert len(COMMANDS) > 40, "the README's code blocks were not found"
    assert {n for n in names if n in SKIPPED} == set(SKIPPED), f"no longer in the docs: {set(SKIPPED) - set(names)}"
    known = {"make", "python", "python3", "tensorboard", "paradis", "paradis-lab", "paradis-app"}
    for command in COMMANDS:
        if command.lang == "shell" and command.name not in SKIPPED:
            program = Path(split_env(shlex.split(command.text))[1][0]).name
            assert program in known, f"{command.where}: `{command.text}` is neither run here nor in SKIPPED"


def test_the_reader_finds_what_a_user_would_type(tmp_path):
    """`\\` continuations, trailing and following comments, indented fences, scripts, snippets; not yaml or output."""
    from readme_commands import extract

    doc = tmp_path / "doc.md"
    doc.write_text("""text
```bash
paradis fit --config configs/mnist.yaml \\
    --model.lr 0.1   # a note with 'quotes'
#   -> runs/mnist/predictions.csv
paradis-lab 'a # b.yaml'
```
- item:
  ```bash
  make demo
  ```
```yaml
base: configs/mnist.yaml
```
```
paradis: error: not a command
```
```python
print(1)
```
```bash
URL=http://x; RUNS=$PWD/runs
curl -s $URL
```
""")
    commands = extract(doc)
    assert [(c.lang, c.name) for c in commands] == [
        ("shell", "paradis fit --config configs/mnist.yaml --model.lr 0.1"),
        ("shell", "paradis-lab 'a # b.yaml'"),
        ("shell", "make demo"),
        ("python", "python: print(1)"),
        ("script", "script: URL=http://x; RUNS=$PWD/runs"),
    ]
    assert promised_files(commands[0].comment) == ["runs/mnist/predictions.csv"]
    assert commands[0].line == 3 and commands[2].line == 10


@pytest.mark.parametrize("section", sections())
def test_readme_commands(ws, section):
    """The section's commands in document order (a command already run earlier in the same words is not rerun)."""
    app = section.endswith(":app")
    failures = []
    for command in in_run_order(COMMANDS):
        if command.name in SKIPPED or is_app_client(command) != app:
            continue
        if (command.doc + ":app" if app else section_of(command)) != section:
            continue
        if command.text in ws.ran:
            ws.results[command.name] = f"ran at {ws.ran[command.text]}"
            continue
        ws.ran[command.text] = command.where
        started = time.perf_counter()
        try:
            run_command(ws, command)
            ws.results[command.name] = "ran"
        except (AssertionError, subprocess.SubprocessError, OSError, KeyError, ValueError) as err:
            failures.append(f"{command.where}: {command.name}\n{err}")
        print(f"{time.perf_counter() - started:6.1f} s  {command.where}  {command.name[:120]}")
    assert not failures, "\n\n".join(failures)


def test_every_command_was_run_or_skipped(ws):
    """After the sections: each command of the docs ran (or was the same words as one that ran) or is in SKIPPED."""
    names = {c.name for c in COMMANDS}
    assert names - set(SKIPPED) == set(ws.results), f"never run: {sorted(names - set(SKIPPED) - set(ws.results))}"
    ran = sum(1 for result in ws.results.values() if result == "ran")
    print(f"\nREADME commands: {len(ws.results)} run ({ran} distinct), {len(SKIPPED)} skipped by name:")
    for name, reason in SKIPPED.items():
        print(f"  {name}\n      {reason}")
