"""Two start-up pieces of `paradis`' argument parsing: one-sentence errors for `typing.Literal` choices, and
which subcommand was asked for (only that one's parser is built)."""

from __future__ import annotations

import ast
import re
import sys
from typing import Iterable, Optional

from lightning.pytorch.cli import LightningArgumentParser

# jsonargparse's error for a value outside a module's `typing.Literal` choices, turned into the one sentence
# the modules' own checks give ("Unknown activation 'swishy'; choose one of: relu, tanh, ...").
# A nested parser's error reaches the outer one wrapped in a "Does not validate against any of the Union
# subtypes" report; the sentence is found in it again there.
LITERAL_ERROR = re.compile(r'Parser key "(\w+)":\s*Expected a typing\.Literal(\[.*?\])\. Got value: (\S+)')
CHOICE_SENTENCE = re.compile(r"Unknown \w+ '[^']*'; choose one of: [^\n]*\.")


class ParadisParser(LightningArgumentParser):
    def error(self, message: str, ex: Optional[Exception] = None):
        match = LITERAL_ERROR.search(message)
        if match:
            key, choices, value = match.group(1), ast.literal_eval(match.group(2)), match.group(3)
            message = f"Unknown {key} '{value}'; choose one of: {', '.join(map(str, choices))}."
        sentence = CHOICE_SENTENCE.search(message)
        if sentence:
            raise ValueError(sentence.group(0))
        super().error(message, ex)


def requested_subcommand(args: Optional[list[str]], names: Iterable[str]) -> Optional[str]:
    """The first argument that names a subcommand (None for `paradis --help` and the like)."""
    return next((arg for arg in (sys.argv[1:] if args is None else args) if arg in names), None)
