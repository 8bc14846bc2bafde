"""Reading the YAML files a user writes (configs, lab files) strictly: one sentence for a missing file, a syntax
error (file and line) and a key written twice (file, key and both lines). PyYAML keeps the last of two equal keys
without a word; a copy-paste once left two `checkpoint:` blocks in three configs that way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKey(ValueError):
    """A mapping holds the same key twice; the message is the sentence a user sees."""


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)  # `<<` merge keys first: a merged key may be overridden on purpose
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(f"the key '{key}' is written twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str = "Config file") -> Any:
    """The content of the YAML file `path`, or one sentence (ValueError / FileNotFoundError) saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; check the path (the configs are in configs/).")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except DuplicateKey as err:
        raise ValueError(f"{what} {path}: {err}; keep one of them.") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ValueError(
            f"{what} {path} is not valid YAML at {where} ({err.problem or err.context}); fix its syntax."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax.") from None
