"""Cat faces (issue 33): the real Haar-cascade detector on a tiny folder (the bundled CC0 photo of Chelsea the cat,
tests/data/README.md), the crop geometry, the cache, the no-face error, hostile files, the memorisation check's copy
rate, and a tiny `paradis fit` on face crops. Never reads ../shared/data/cats128."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import cat_faces
from datamodules.images import ImageFolderDataModule
from paradis.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "tests" / "data" / "cat_faces"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grey_photo(path: Path, level: int = 128) -> Path:
    Image.new("RGB", (128, 128), (level, level, level)).save(path)
    return path


def photo_folder(tmp_path: Path, copies: int = 1, no_face: int = 1) -> Path:
    """`copies` of each bundled face photo and `no_face` plain grey photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(copies):
        for face in sorted(FACES.glob("*.png")):
            shutil.copy(face, folder / f"{face.stem}_{i}.png")
    for i in range(no_face):
        grey_photo(folder / f"grey_{i}.png", 100 + i)
    return folder


def face_data(folder: Path, cache: Path, **kwargs) -> ImageFolderDataModule:
    kwargs = {"image_size": 32, "val_fraction": 0.3, **kwargs}
    return ImageFolderDataModule(data_dir=str(folder), crop="cat_face", cache_dir=str(cache), **kwargs)


def counting_detection(monkeypatch) -> list:
    """Record every folder detection (the real one runs)."""
    calls, real = [], cat_faces.detect_folder
    monkeypatch.setattr(cat_faces, "detect_folder", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    return calls


def test_both_cascades_find_the_bundled_cat_and_not_a_grey_photo(tmp_path):
    detectors = cat_faces.cascades()
    grey = np.asarray(Image.open(FACES / "chelsea_a.png").convert("L"))
    for detector in detectors:  # each cascade alone fires on the face: the union is not one cascade's luck
        x, y, w, h = cat_faces.largest_box(grey, [detector])
        assert 30 <= x + w / 2 <= 90 and 30 <= y + h / 2 <= 90 and 32 <= w <= 80
    for photo in sorted(FACES.glob("*.png")):
        left, top, side = cat_faces.find_face(photo, detectors)
        assert 60 <= side <= 110 and left >= 0 and top >= 0 and left + side <= 128 and top + side <= 128
    assert cat_faces.find_face(grey_photo(tmp_path / "grey.png"), detectors) is None


def test_large_photos_are_searched_at_128_px_and_boxes_scaled_back(tmp_path, monkeypatch):
    searched = []
    monkeypatch.setattr(cat_faces, "largest_box", lambda grey, _: searched.append(grey.shape) or (10, 20, 40, 30))
    Image.new("RGB", (384, 256)).save(tmp_path / "big.png")
    square = cat_faces.find_face(tmp_path / "big.png", [])
    assert searched == [(128, 192)] and square == cat_faces.square_around((20, 40, 80, 60), 384, 256)


@pytest.mark.parametrize(
    ("box", "size", "square"),
    [
        ((40, 40, 20, 20), (100, 100), (35, 35, 30)),  # 1.5x the box, same centre
        ((40, 40, 20, 10), (100, 100), (35, 30, 30)),  # the larger side counts
        ((0, 2, 40, 40), (100, 100), (0, 0, 60)),  # moved inside at the top-left edge, kept square
        ((70, 70, 30, 30), (100, 100), (55, 55, 45)),  # ... and at the bottom-right
        ((10, 0, 80, 60), (100, 70), (15, 0, 70)),  # larger than the photo: shrunk to its shorter side
    ],
)
def test_crop_geometry(box, size, square):
    assert cat_faces.square_around(box, *size) == square
    left, top, side = square
    assert left >= 0 and top >= 0 and left + side <= size[0] and top + side <= size[1]


def test_faces_found_once_cached_outside_the_folder_and_a_changed_file_detects_again(tmp_path, monkeypatch):
    folder, cache = photo_folder(tmp_path), tmp_path / "cache"
    before = sorted(p.name for p in folder.iterdir())
    calls = counting_detection(monkeypatch)
    first = face_data(folder, cache)
    first.prepare_data()
    first.setup("fit")
    assert len(calls) == 1 and len(first.train) + len(first.val) == 2  # the grey photo is not used
    assert first.train.shape[1:] == (3, 32, 32) and len(list(cache.glob("faces_*.json"))) == 1
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the photo folder

    second = face_data(folder, cache)  # a second run (or another DDP rank) reads the cache
    second.prepare_data()
    second.setup("fit")
    assert len(calls) == 1 and torch.equal(second.train, first.train) and torch.equal(second.val, first.val)

    grey_photo(folder / "grey_0.png", 30)  # a changed file: a new key, detection runs again
    face_data(folder, cache).prepare_data()
    assert len(calls) == 2 and len(list(cache.glob("faces_*.json"))) == 2


def test_crops_are_the_face_squares_and_center_stays_the_default(tmp_path):
    folder = photo_folder(tmp_path, no_face=0)
    faces = face_data(folder, tmp_path / "cache", val_fraction=0.5)
    faces.setup("fit")
    center = ImageFolderDataModule(data_dir=str(folder), image_size=32, val_fraction=0.5)
    center.setup("fit")
    assert center.crop == "center"
    left, top, side = cat_faces.find_face(folder / "chelsea_a_0.png", cat_faces.cascades())
    expected = Image.open(folder / "chelsea_a_0.png").crop((left, top, left + side, top + side))
    expected = torch.from_numpy(np.asarray(expected.resize((32, 32), Image.BICUBIC))).permute(2, 0, 1)
    crops = torch.cat([faces.train, faces.val])
    assert any(torch.equal(crop, expected) for crop in crops)
    assert not any(torch.equal(a, b) for a in crops for b in torch.cat([center.train, center.val]))


def test_a_folder_without_a_face_is_one_sentence_and_writes_nothing(tmp_path):
    folder, cache = photo_folder(tmp_path, copies=0, no_face=3), tmp_path / "cache"
    with pytest.raises(ValueError) as error:
        face_data(folder, cache).prepare_data()
    message = str(error.value)
    assert message.startswith(f"No cat face was found in any of the 3 readable photos of {folder};")
    assert "--data.crop center" in message and "\n" not in message and message.count(". ") == 0
    assert not cache.exists() and sorted(p.name for p in folder.iterdir()) == [f"grey_{i}.png" for i in range(3)]


def test_hostile_files_are_skipped_and_counted_as_the_folder_reader_does(tmp_path, caplog):
    folder = photo_folder(tmp_path)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "fake.jpg").write_bytes(b"this is not a JPEG")
    good = (FACES / "chelsea_a.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    data = face_data(folder, tmp_path / "cache")
    with pytest.warns(UserWarning, match=r"Skipped 3 unreadable or non-image file\(s\)"):
        with caplog.at_level(logging.INFO):
            data.prepare_data()
    assert "2 of 3 photos have a cat face; the others are not used" in caplog.text
    data.setup("fit")
    assert len(data.train) + len(data.val) == 2


def test_prepare_data_names_the_count_and_writes_the_contact_sheet_into_the_run_folder(tmp_path, caplog):
    from lightning.pytorch import Trainer

    folder = photo_folder(tmp_path, copies=3)
    data = face_data(folder, tmp_path / "cache")
    data.trainer = Trainer(default_root_dir=str(tmp_path / "run"), logger=False, accelerator="cpu")
    with caplog.at_level(logging.INFO):
        data.prepare_data()
    assert "6 of 7 photos have a cat face; the others are not used" in caplog.text
    sheet = Image.open(tmp_path / "run" / "cat_faces.png")
    assert sheet.size == (6 * 34 + 2, 34 + 2)  # six 32 px tiles, 2 px padding


# -- the memorisation check ---------------------------------------------------------------------------------
def scorer():
    spec = importlib.util.spec_from_file_location("cats_score", ROOT / "benchmarks" / "cats_score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cats_score"] = module
    spec.loader.exec_module(module)
    return module


def test_copy_rate_is_one_for_copies_and_about_zero_for_new_images():
    generator = torch.Generator().manual_seed(0)
    train, held_out = torch.randn(500, 64, generator=generator), torch.randn(200, 64, generator=generator)
    copy_rate = scorer().copy_rate
    copies = copy_rate(train[:64] + 1e-4, train, held_out)
    assert copies["copy_rate"] == 1.0 and torch.equal(copies["nearest"], torch.arange(64))
    fresh = copy_rate(torch.randn(64, 64, generator=generator), train, held_out)
    assert fresh["copy_rate"] <= 3 / 64 and 0 < fresh["threshold"] < float(fresh["distance"].max())
    assert fresh["held_out_rate"] == pytest.approx(0.01, abs=0.006)  # the threshold's own percentile
    half = copy_rate(torch.cat([train[:32], torch.randn(32, 64, generator=generator)]), train, held_out)
    assert half["copy_rate"] == pytest.approx(0.5, abs=3 / 64)


def test_nearest_figure_puts_each_sample_beside_its_training_image(tmp_path):
    samples = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    train = torch.arange(3 * 3 * 8 * 8).reshape(3, 3, 8, 8).remainder(256).to(torch.uint8)
    path = scorer().nearest_figure(samples, train, torch.tensor([0, 1, 2, 3, 5]), tmp_path / "nearest.png")
    image = np.asarray(Image.open(path))
    assert image.shape == (2 * 10 + 2, 11 * 10 + 2, 3)  # 4 pairs and 3 gaps a row; 5 pairs: 2 rows
    assert np.array_equal(image[2:10, 12:20], train[0].permute(1, 2, 0).numpy())  # sample 0's neighbour
    assert np.array_equal(image[12:20, 12:20], train[2].flip(-1).permute(1, 2, 0).numpy())  # index 5: mirrored


# -- a tiny run ---------------------------------------------------------------------------------------------
def test_paradis_fit_trains_on_face_crops_and_the_checkpoint_says_so(tmp_path, monkeypatch, caplog):
    from apps.cli import main

    folder, run = photo_folder(tmp_path, copies=4, no_face=0), tmp_path / "run"
    monkeypatch.setattr("sys.argv", ["paradis"])
    caplog.set_level(logging.INFO)
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "ddpm_catfaces32_cpu.yaml"),
            "--data.data_dir",
            str(folder),
            "--data.cache_dir",
            str(tmp_path / "cache"),
            "--run_dir",
            str(run),
            "--model.model_channels",
            "16",
            "--model.channel_mult",
            "[1, 2]",
            "--model.attention_resolutions",
            "[16]",
            "--model.attention_head_dim",
            "16",
            "--data.batch_size",
            "4",
            "--data.eval_batch_size",
            "4",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.callbacks",
            "[]",
            "--model.export_on_fit_end",
            "false",
        ]
    )
    assert "8 of 8 photos have a cat face; the others are not used" in caplog.text
    assert (run / "cat_faces.png").is_file()
    data = read_checkpoint(run / "checkpoints" / "last.ckpt")["datamodule_hyper_parameters"]
    assert data["crop"] == "cat_face" and data["val_fraction"] == 0.1  # what cats_score.py reads
