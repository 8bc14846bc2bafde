"""The size of the run-safety code in statements (AST), not lines, at two commits (issue 29).

    python benchmarks/code_size.py 1dda750 HEAD      # before / after, per file and in all

A statement is one `ast.stmt` node (an assignment, a call on its own line, a `def`, an `if` with its test, ...),
counted recursively, docstrings excluded: what a reader has to follow, whatever the formatter does with lines.
The safety code is every file in SAFETY that exists at the commit (files move and merge between commits).
"""

from __future__ import annotations

import argparse
import ast
import subprocess

SAFETY = [
    # checkpointing, atomic writes, resume, divergence, the run folder, the internals file
    "callbacks/checkpointing.py",
    "callbacks/atomic_io.py",
    "callbacks/resume.py",
    "callbacks/divergence.py",
    "apps/run_folder.py",
    "paradis/lightning_internals.py",
    # the training loaders' positions
    "datamodules/loader_state.py",
    "datamodules/tensor_batches.py",
    "datamodules/text_batches.py",
    # the same files after they moved into one package (issue 29: paradis/safety/, its docstring the map)
    "paradis/safety/__init__.py",
    "paradis/safety/checkpointing.py",
    "paradis/safety/atomic_io.py",
    "paradis/safety/resume.py",
    "paradis/safety/divergence.py",
    "paradis/safety/run_folder.py",
    "paradis/safety/loader_state.py",
]


def statements(source: str) -> int:
    """`ast.stmt` nodes in `source`, docstrings (a string expression first in a module, class or def) excluded."""
    tree = ast.parse(source)
    docstrings = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(
            node, clean=False
        ):
            docstrings += 1
    return sum(isinstance(node, ast.stmt) for node in ast.walk(tree)) - docstrings


def at(commit: str, path: str) -> str | None:
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commits", nargs="+", help="git commits to compare, e.g. 1dda750 HEAD")
    args = parser.parse_args()
    counts = {c: {p: statements(s) for p in SAFETY if (s := at(c, p)) is not None} for c in args.commits}
    print("| file | " + " | ".join(args.commits) + " |")
    print("|---|" + "---:|" * len(args.commits))
    for path in SAFETY:
        print(f"| `{path}` | " + " | ".join(str(counts[c].get(path, "-")) for c in args.commits) + " |")
    print("| **all** | " + " | ".join(f"**{sum(counts[c].values())}**" for c in args.commits) + " |")


if __name__ == "__main__":
    main()
