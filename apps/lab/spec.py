"""Lab files: parsing, grid expansion and the `search:` block.

base: configs/mnist.yaml          # one path, or a list of --config files
seed: 42                          # --seed_everything for every run
target_acc: 0.97                  # "epochs to reach" column
args: --trainer.max_epochs 5      # shared overrides (a string or a list)
variants:
  - {name: relu, args: --model.activation relu}
grid:                             # dimension -> {label: args} or option -> [values]
  model.lr: [0.1, 0.01]
search: {...}                     # an Optuna study instead of variants/grid (apps/lab/search/study.py)
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paradis.yaml_files import read_yaml

LAB_KEYS = {"name", "description", "base", "seed", "target_acc", "args", "variants", "grid", "search"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


@dataclass
class Variant:
    name: str
    args: list[str]


@dataclass
class Lab:
    path: Path
    axis: str
    base: list[str]
    seed: int | None
    target_acc: float
    args: list[str]
    variants: list[Variant]
    description: str = ""
    search: dict[str, Any] | None = field(default=None)  # the raw `search:` block, checked by apps.lab.search.study


def as_args(value: Any, where: str) -> list[str]:
    """A string ("--model.lr 0.1") or a list of strings -> argv list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ValueError(f"{where} must be a string of options or a list of strings, got {value!r}.")


def format_value(value: Any) -> str:
    """A YAML value as the CLI expects it: lists as `[64,64]`, booleans lower-case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def grid_variants(grid: Any, where: str) -> list[Variant]:
    """Product of the grid's dimensions; each dimension is {label: args} or option: [values]."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{where}: `grid` must map each dimension to {{label: args}} or to a list of values.")
    dimensions = []
    for key, choices in grid.items():
        if isinstance(choices, dict) and choices:
            dimensions.append(
                [(str(label), as_args(args, f"{where}: grid.{key}.{label}")) for label, args in choices.items()]
            )
        elif isinstance(choices, list) and choices:
            option = str(key).lstrip("-")
            short = option.rsplit(".", 1)[-1]
            dimensions.append(
                [
                    (f"{short}{format_value(v).strip('[]').replace(',', 'x')}", [f"--{option}", format_value(v)])
                    for v in choices
                ]
            )
        else:
            raise ValueError(f"{where}: grid dimension `{key}` must be a non-empty mapping or list.")
    return [
        Variant("_".join(label for label, _ in combo), [a for _, args in combo for a in args])
        for combo in itertools.product(*dimensions)
    ]


def read_spec(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"Lab file {path} does not exist; pass one of configs/lab/*.yaml.")
    spec = read_yaml(path, "Lab file") or {}
    if not isinstance(spec, dict):
        raise ValueError(f"Lab file {path} must be a mapping with `base` and `variants`, `grid` or `search`.")
    unknown = sorted(set(spec) - LAB_KEYS)
    if unknown:
        raise ValueError(
            f"Lab file {path} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(LAB_KEYS))}."
        )
    return spec


def check_names(path: Path, variants: list[Variant]) -> None:
    names = [v.name for v in variants]
    for name in names:
        if not NAME_PATTERN.match(name):
            raise ValueError(
                f"{path}: variant name {name!r} is not a valid folder name; use letters, digits, _ . = + -."
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: variant name(s) {', '.join(duplicates)} appear more than once; make names unique.")


def load_lab(path: str | Path) -> Lab:
    path = Path(path)
    spec = read_spec(path)
    base = spec.get("base")
    base = [base] if isinstance(base, str) else base
    if not base or not all(isinstance(b, str) for b in base):
        raise ValueError(f"Lab file {path} needs `base: <config.yaml>` (the config every variant starts from).")
    for config in base:
        if not Path(config).is_file():
            raise FileNotFoundError(
                f"Base config {config} named in {path} does not exist; run paradis-lab from the repository root or fix `base`."
            )
    variants = []
    for i, item in enumerate(spec.get("variants") or []):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{path}: variant #{i + 1} must be a mapping with `name` and `args`.")
        variants.append(Variant(str(item["name"]), as_args(item.get("args"), f"{path}: variant {item['name']}")))
    if spec.get("grid") is not None:
        variants += grid_variants(spec["grid"], str(path))
    search = spec.get("search")
    if search is not None and variants:
        raise ValueError(f"Lab file {path} has both `search` and `variants`/`grid`; keep one of them.")
    if search is not None and not isinstance(search, dict):
        raise ValueError(f"{path}: `search` must be a mapping with `params` (and optionally `trials`, `objective`).")
    if not variants and search is None:
        raise ValueError(f"Lab file {path} defines no variants; add a `variants` list, a `grid` or a `search`.")
    check_names(path, variants)
    target = float(spec.get("target_acc", 0.95))
    if not 0 < target <= 1:
        raise ValueError(f"{path}: target_acc must be in (0, 1], got {target}.")
    seed = spec.get("seed")
    return Lab(
        path=path,
        axis=str(spec.get("name") or path.stem),
        base=list(base),
        seed=None if seed is None else int(seed),
        target_acc=target,
        args=as_args(spec.get("args"), f"{path}: args"),
        variants=variants,
        description=str(spec.get("description") or "").strip(),
        search=search,
    )


def config_modules(labs: list[Lab]) -> list[str]:
    """Modules named by `class_path` in the labs' base configs: preloaded by the warm worker."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            path = node.get("class_path")
            if isinstance(path, str) and "." in path:
                found.add(path.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for lab in labs:
        for config in lab.base:
            walk(read_yaml(config))
    return sorted(found)
