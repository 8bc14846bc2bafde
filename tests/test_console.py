"""The console of every shipped config is clean: each `configs/*.yaml` fits for a step or two (in tiny form: small
data, a small network where the config's is large) and prints no deprecation warning, no library advert, and no
"`weights_only` was not set" line (README "The `paradis` command"). Warnings raised during the fit are recorded
with every filter set to "always", after the CLI's own narrow filters (paradis/quiet.py), as a user would see them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from resume_tools import fit

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
ADVERTS = ("💡", "Tip:", "litlogger", "litmodels", "`weights_only` was not set")
LIMITS = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
SMALL_UNET = [
    "--model.model_channels",
    "8",
    "--model.channel_mult",
    "[1, 1]",
    "--model.attention_resolutions",
    "[]",
    "--model.attention_head_dim",
    "8",
    "--model.sample_steps",
    "2",
    "--model.export_on_fit_end",
    "false",
    "--trainer.check_val_every_n_epoch",
    "1",
]


def photos(folder: Path) -> Path:
    """Twelve small noise photos (and, for the face configs, the tests' cat-face photos)."""
    folder.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = torch.randint(0, 256, (96, 96, 3), dtype=torch.uint8, generator=generator)
        Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    for path in (ROOT / "tests/data/cat_faces").glob("*.png"):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def tiny_args(config: str, tmp_path: Path, tmp_path_factory) -> list[str]:
    args = ["--config", f"configs/{config}", "--run_dir", str(tmp_path / "run"), *LIMITS]
    if config.startswith("mnist"):
        return [*args, "--data.download", "false", "--data.train_subset", "256", "--data.val_size", "64"]
    if config.startswith("ddpm"):
        args += [*SMALL_UNET, "--data.batch_size", "4"]
        if config != "ddpm_silhouettes.yaml":  # photos, at 32 px: the configs' 64 and 128 px grids cost minutes
            args += ["--data.image_size", "32", "--data.load_size", "32", "--model.sample_size", "32"]
            args += ["--data.data_dir", str(photos(tmp_path / "photos"))]
            args += ["--data.cache_dir", str(tmp_path / "cache")] if "catfaces" in config else []
        return args
    from text_fixtures import make_tiny_distilbert

    args += ["--data.data_dir", str(tmp_path / "text"), "--data.train_size", "16", "--data.val_size", "8"]
    args += ["--data.batch_size", "8", "--data.eval_batch_size", "8"]
    if config == "text_lora.yaml":  # distilbert-base-uncased comes from the Hub: a local DistilBERT of that shape
        args += ["--model.model_name_or_path", str(make_tiny_distilbert(tmp_path_factory.getbasetemp() / "distil"))]
    return args


@pytest.mark.parametrize("config", CONFIGS)
def test_a_shipped_config_fits_with_a_clean_console(config, tmp_path, tmp_path_factory, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = fit(*tiny_args(config, tmp_path, tmp_path_factory))
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    deprecations = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, (DeprecationWarning, FutureWarning)) or "deprecat" in str(w.message).lower()
    ]
    assert not deprecations, deprecations
    console = (out + err).splitlines()
    assert not [line for line in console if any(a in line for a in ADVERTS)]
    assert not [line for line in console if "deprecat" in line.lower()]
