"""The code's shape (docs/design.md): imports flow one way, files stay small, one formatter and linter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("paradis", "lightning_modules", "datamodules", "callbacks", "apps")
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "paradis": set(),
    "lightning_modules": {"paradis"},
    "datamodules": {"paradis"},
    "callbacks": {"paradis"},
    "apps": {"paradis", "lightning_modules", "datamodules", "callbacks"},
}
# Counted in statements (ast.stmt nodes), which the formatter does not change, unlike lines: a file past this
# holds more than one job. The largest today is about 195.
MAX_STATEMENTS = 200


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in the file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package):
    wrong = {}
    for path in source_files(package):
        bad = project_imports(path) - ALLOWED[package] - {package}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package]) or 'nothing of the project'}: {wrong}"


def test_the_checker_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from datamodules.mnist import MNISTDataModule\nimport paradis.images\n")
    assert project_imports(bad) == {"datamodules", "paradis"}


def module_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in the file, also inside functions)."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for pkg in PACKAGES for p in source_files(pkg)}
    modules = {name.removesuffix(".__init__") for name in files}
    graph = {}
    for name, path in files.items():
        name = name.removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:  # depth first; an edge back to an open module is a circle
        state[node] = "open"
        for imported in sorted(graph.get(node, ())):
            if state.get(imported) == "open":
                found.append([*stack[stack.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*stack, imported])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_circle():
    assert cycles(module_graph()) == []


def test_the_checker_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def statements(path: Path) -> int:
    return sum(isinstance(node, ast.stmt) for node in ast.walk(ast.parse(path.read_text(), str(path))))


@pytest.mark.parametrize("package", PACKAGES)
def test_files_stay_small(package):
    long = {str(p.relative_to(ROOT)): n for p in source_files(package) if (n := statements(p)) > MAX_STATEMENTS}
    assert not long, f"files over {MAX_STATEMENTS} statements: {long}; split them by job (docs/design.md)"


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff_is_clean(command):
    """pyproject.toml's [tool.ruff] settings hold for the whole tree: run `ruff format . && ruff check --fix .`."""
    ruff = Path(sys.executable).parent / "ruff"
    proc = subprocess.run([str(ruff), *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_task_modules_fulfil_the_contract():
    """The CLI, the callbacks and the app rely on `paradis.contract` only; each task module provides it."""
    from lightning_modules.ddpm import DDPM
    from lightning_modules.mnist import MNISTClassifier
    from paradis.contract import Classifier, Generator, Task

    mnist = MNISTClassifier()
    ddpm = DDPM(
        sample_size=8,
        in_channels=1,
        model_channels=8,
        channel_mult=(1,),
        num_res_blocks=1,
        attention_resolutions=(),
        attention_head_dim=8,
        num_train_timesteps=10,
    )
    assert isinstance(mnist, Classifier) and isinstance(ddpm, Generator)
    assert isinstance(ddpm, Task) and not isinstance(ddpm, Classifier) and not isinstance(mnist, Generator)
    digits = torch.zeros(3, 28, 28, dtype=torch.uint8)
    assert mnist.classify(digits).shape == (3, len(mnist.class_names))
    images = ddpm.sample(2, steps=2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
