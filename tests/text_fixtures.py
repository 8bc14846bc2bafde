"""A tiny DistilBERT built locally (no download) with the bundled uncased WordPiece vocab."""

from __future__ import annotations

from pathlib import Path

import torch

from paradis.bundled import bundled_path


def make_tiny_distilbert(path: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide DistilBERT (random weights, no head) + tokenizer to `path`; returns `path`.

    The vocab is the bundled MiniLM's (the same 30,522 uncased WordPiece tokens as distilbert-base-uncased).
    """
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(bundled_path("minilm"))  # uncased WordPiece, 30,522 tokens
    tokenizer.model_max_length = 128
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=128
    )
    DistilBertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
