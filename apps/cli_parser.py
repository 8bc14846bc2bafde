"""Three start-up pieces of `paradis`' argument parsing: one sentence for every parsing error (an unknown option
with the closest valid name, a value of the wrong type, a `typing.Literal` choice), no abbreviated options, and
which subcommand was asked for (only that one's parser is built)."""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Iterable

from lightning.pytorch.cli import LightningArgumentParser

# A value outside a module's `typing.Literal` choices: the sentence the modules' own checks give ("Unknown
# activation 'swishy'; choose one of: relu, tanh, ..."), found again in a nested parser's wrapped error.
LITERAL_ERROR = re.compile(r'Parser key "(\w+)":\s*Expected a typing\.Literal(\[.*?\])\. Got value: (\S+)')
CHOICE_SENTENCE = re.compile(r"Unknown \w+ '[^']*'; choose one of: [^\n]*\.")
# An option a model / data class does not take ("--model.lrr"), one the parser does not know ("--trainer.max_epoch"),
# and a value of the wrong type ("--trainer.max_epochs abc").
NOT_ACCEPTED = re.compile(r'Parser key "(\w+)":.*?class_path \'([\w.]+)\'.*?Option \'(\w+)\' is not accepted', re.S)
UNRECOGNIZED = re.compile(r"[Uu]nrecognized arguments: (\S+)")
WRONG_TYPE = re.compile(r'Parser key "([\w.]+)":.*?Expected a <class \'(\w+)\'>.*?Given value: ([^\n]*)', re.S)


class ParadisParser(LightningArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--trainer.max_epoch 3` must not silently mean max_epochs
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if match := LITERAL_ERROR.search(message):
            key, choices, value = match.group(1), ast.literal_eval(match.group(2)), match.group(3)
            message = f"Unknown {key} '{value}'; choose one of: {', '.join(map(str, choices))}."
        choice = CHOICE_SENTENCE.search(message)
        sentence = choice.group(0) if choice else self.one_sentence(message)
        if sentence:
            raise ValueError(sentence)
        super().error(message, ex)

    def one_sentence(self, message: str) -> str | None:
        """The sentence for an unknown option or a value of the wrong type (None: leave jsonargparse's message)."""
        help_hint = "`--help` lists the options"
        if match := NOT_ACCEPTED.search(message):
            section, class_path, name = match.groups()
            options = [f"--{section}.{p}" for p in init_parameters(class_path)]
            return unknown_option(
                f"--{section}.{name}", options, f"{class_path.rsplit('.', 1)[-1]} takes no such option; {help_hint}"
            )
        if match := UNRECOGNIZED.search(message):
            return unknown_option(
                match.group(1).split("=", 1)[0], re.findall(r"--[\w.]+", self.format_usage()), help_hint
            )
        if match := WRONG_TYPE.search(message):
            key, expected, value = match.groups()
            return f"--{key} expects {'an' if expected[0] in 'aeiou' else 'a'} {expected}, got '{value.strip()}'; fix the value."
        return None


def init_parameters(class_path: str) -> list[str]:
    """The `__init__` parameter names of the class at `class_path` (empty when it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]


def unknown_option(given: str, options: Iterable[str], hint: str) -> str:
    close = difflib.get_close_matches(given, sorted(set(options)), n=1, cutoff=0.6)
    suggestion = f"; did you mean {close[0]}?" if close else ""
    return f"Unknown option {given}{suggestion} ({hint})."


def requested_subcommand(args: list[str] | None, names: Iterable[str]) -> str | None:
    """The first argument that names a subcommand (None for `paradis --help` and the like)."""
    return next((arg for arg in (sys.argv[1:] if args is None else args) if arg in names), None)
