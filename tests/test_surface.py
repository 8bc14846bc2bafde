"""Lightning's public surface (issue 18): every private name of Lightning, torch, Optuna or jsonargparse lives in
`paradis/lightning_internals.py`, at most `MAX_PRIVATE_NAMES` of them, and each still exists as used there."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("apps", "callbacks", "datamodules", "lightning_modules", "paradis", "benchmarks")
INTERNALS_FILE = ROOT / "paradis" / "lightning_internals.py"
LIBRARIES = ("lightning", "pytorch_lightning", "torch", "optuna", "jsonargparse")
MAX_PRIVATE_NAMES = 1
# Single-underscore names of the standard library that are public API.
STDLIB = {"_exit", "_replace", "_asdict", "_fields", "_make"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def project_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if p != INTERNALS_FILE)


def load(path: Path):
    """The module of a project file (or, for the checker's own test, of any file)."""
    if path.is_relative_to(ROOT):
        return importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def defined_private_names(tree: ast.AST) -> set[str]:
    """The private names a file defines: functions, classes, attributes it assigns, module-level names."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if private(n)}


@functools.cache
def library_private_names(cls: type) -> frozenset[str]:
    """Private names a library class defines or uses on `self` (including instance attributes set in methods)."""
    names = {n for n in vars(cls) if private(n)}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return frozenset(names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            if private(node.attr):
                names.add(node.attr)
    return frozenset(names)


def library_bases(cls: type) -> list[type]:
    return [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] in LIBRARIES]


def private_uses(path: Path, project_names: set[str]) -> list[str]:
    """`file:line name` for each private library name the file uses: imported from a library (or a library's
    private module), taken from an object when the project defines no such name, or a name of a library base
    class that a project class overrides, reads or calls on `self` / `super()`."""
    tree = ast.parse(path.read_text(), str(path))
    where = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            found += [f"{where}:{node.lineno} {node.module}" for part in node.module.split(".") if private(part)]
            found += [f"{where}:{node.lineno} {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Import):
            found += [
                f"{where}:{node.lineno} {a.name}"
                for a in node.names
                if a.name.split(".")[0] in LIBRARIES and any(private(p) for p in a.name.split("."))
            ]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            if node.attr not in project_names and node.attr not in STDLIB:
                found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
            and node.args[1].value not in project_names
        ):
            found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    found += overridden_library_names(path, tree, where)
    return found


def overridden_library_names(path: Path, tree: ast.AST, where: str) -> list[str]:
    """Private names of a library base class that a project class defines, or uses on `self` / `super()`."""
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.bases]
    uses = {}
    for node in classes:
        names = set()
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(inner.name):
                names.add((inner.name, inner.lineno))
            elif (
                isinstance(inner, ast.Attribute)
                and private(inner.attr)
                and (
                    (isinstance(inner.value, ast.Name) and inner.value.id in ("self", "cls"))
                    or (
                        isinstance(inner.value, ast.Call)
                        and isinstance(inner.value.func, ast.Name)
                        and inner.value.func.id == "super"
                    )
                )
            ):
                names.add((inner.attr, inner.lineno))
        if names:
            uses[node.name] = names
    if not uses:
        return []
    module = load(path)
    found = []
    for class_name, names in uses.items():
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            continue
        library = set().union(*map(library_private_names, library_bases(cls))) if library_bases(cls) else set()
        found += [
            f"{where}:{line} {class_name}.{name} (a private name of {', '.join(b.__name__ for b in library_bases(cls))})"
            for name, line in sorted(names, key=lambda x: x[1])
            if name in library
        ]
    return found


def all_private_uses() -> list[str]:
    files = project_files()
    trees = {path: ast.parse(path.read_text(), str(path)) for path in files}
    project_names = set().union(*(defined_private_names(tree) for tree in trees.values()))
    project_names |= defined_private_names(ast.parse(INTERNALS_FILE.read_text()))
    library = set()
    for path in files:  # a name the project defines that is also a library's is not the project's to whitelist
        for node in ast.walk(trees[path]):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
                library |= {a.name for a in node.names if private(a.name)}
    return [use for path in files for use in private_uses(path, project_names - library)]


def test_private_library_names_only_in_lightning_internals():
    uses = all_private_uses()
    assert not uses, (
        "private names of Lightning / torch / Optuna / jsonargparse used outside "
        f"paradis/lightning_internals.py (move them there, behind a function): {uses}"
    )


def test_the_checker_sees_private_uses(tmp_path):
    bad = tmp_path / "surface_probe.py"
    bad.write_text(
        "from lightning.fabric.utilities.seed import _collect_rng_states\n"
        "import torch.utils._pytree\n"
        "from lightning.pytorch.callbacks import ModelCheckpoint\n"
        "def f(trainer):\n"
        "    return trainer.fit_loop._combined_loader, getattr(trainer, '_signal_connector')\n"
        "class Mine(ModelCheckpoint):\n"
        "    def _save_checkpoint(self, trainer, filepath):\n"
        "        self._mine = 1\n"
        "        return super()._save_checkpoint(trainer, filepath)\n"
    )
    uses = private_uses(bad, {"_mine", "_save_checkpoint"})
    text = " ".join(uses)
    for name in (
        "_collect_rng_states",
        "torch.utils._pytree",
        "_combined_loader",
        "_signal_connector",
        "Mine._save_checkpoint",
    ):
        assert name in text, (name, uses)
    assert "_mine" not in text


def test_at_most_max_private_names():
    from paradis.lightning_internals import INTERNALS

    names = sorted({name for _, name, _ in INTERNALS})
    assert len(names) <= MAX_PRIVATE_NAMES, f"{len(names)} private names in paradis/lightning_internals.py: {names}"
    source = INTERNALS_FILE.read_text()
    used = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and private(node.attr):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module:
            used |= {part for part in node.module.split(".") if private(part)}
    own = defined_private_names(ast.parse(source))
    assert used - own <= set(names), (
        f"private names used but not listed in INTERNALS: {sorted(used - own - set(names))}"
    )


def test_each_internal_still_exists_as_used():
    from paradis.lightning_internals import INTERNALS

    broken = []
    for target, name, parameters in INTERNALS:
        if not hasattr(target, name):
            broken.append(f"{target!r}.{name} no longer exists")
        elif parameters is not None and tuple(inspect.signature(getattr(target, name)).parameters) != parameters:
            found = tuple(inspect.signature(getattr(target, name)).parameters)
            broken.append(f"{target!r}.{name} now takes {found}, not {parameters}")
    assert not broken, (
        "A Lightning / torch upgrade changed what paradis/lightning_internals.py relies on: "
        f"{'; '.join(broken)}. Rewrite those workarounds there (docs/design.md, Workarounds)."
    )
