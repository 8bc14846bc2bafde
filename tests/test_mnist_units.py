"""Unit tests of the MNIST module, data module, batch slicer and callbacks (in-process, CPU, small)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.histograms import GradientHistograms
from callbacks.predictions import CSVPredictionWriter
from callbacks.speed import EpochStats, batch_size_of
from datamodules.digits import preprocess_digit
from datamodules.mnist import MNISTDataModule
from datamodules.mnist_sources import load_bundled
from datamodules.tensor_batches import TensorBatches
from lightning_modules.mnist import ACTIVATIONS, MNISTClassifier


@pytest.fixture(scope="module")
def mnist_bundled():
    return load_bundled()


def events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


def tiny_trainer(tmp_path, **kwargs) -> Trainer:
    defaults = dict(
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path, name="", version=""),
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    defaults.update(kwargs)
    return Trainer(**defaults)


def small_data(**kwargs) -> MNISTDataModule:
    options = dict(download=False, batch_size=32, eval_batch_size=200, val_size=500, train_subset=2000)
    options.update(kwargs)
    return MNISTDataModule(**options)


# -- module ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_every_activation_gives_logits(activation):
    model = MNISTClassifier(hidden_sizes=[32, 16], activation=activation, dropout=0.2, batch_norm=True)
    logits = model(torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16, 10]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.net) == 2
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.net) == 2


def test_cnn_accepts_channel_dim_and_counts_blocks():
    model = MNISTClassifier(arch="cnn", cnn_channels=[4, 8], hidden_sizes=[16], batch_norm=True)
    assert model(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).shape == (3, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.net) == 2


def test_default_mlp_is_the_labs_784_128_10():
    model = MNISTClassifier()
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 + 128 * 10 + 10


def test_init_schemes():
    zeros = MNISTClassifier(init="zeros")
    assert all(torch.count_nonzero(p) == 0 for p in zeros.net.parameters())
    kaiming = MNISTClassifier(init="kaiming")
    std = kaiming.net[1].weight.std().item()
    assert abs(std - (2 / 784) ** 0.5) < 0.01  # kaiming normal, fan_in 784
    seed_everything(0)
    a = MNISTClassifier()
    seed_everything(0)
    b = MNISTClassifier()
    assert torch.equal(a.net[1].weight, b.net[1].weight)  # same seed, same initial weights


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(activation="swish2"), "Unknown activation 'swish2'"),
        (dict(lr=-0.1), "Learning rate (model.lr) must be greater than zero"),
        (dict(optimizer="adagrad"), "Unknown optimizer"),
        (dict(scheduler="exp"), "Unknown scheduler"),
        (dict(dropout=1.5), "Dropout"),
        (dict(hidden_sizes=[0]), "Layer sizes"),
        (dict(init="he"), "Unknown init"),
    ],
)
def test_bad_module_options_are_one_clear_sentence(kwargs, message):
    with pytest.raises(ValueError, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
        MNISTClassifier(**kwargs)


def reference_lr(scheduler: str, steps: int, epochs: int, lr: float) -> float:
    """The learning rate torch's own scheduler reaches, stepped as Lightning steps it (per epoch or per batch)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if scheduler == "none":
        return lr
    if scheduler == "step":
        sched, n = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1), epochs
    elif scheduler == "cosine":
        sched, n = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs), epochs
    else:  # onecycle: stepped every batch over the run's optimizer steps
        sched, n = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps), steps
    for _ in range(n):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "optimizer, scheduler",
    [("sgd", "step"), ("adam", "cosine"), ("adamw", "plateau"), ("rmsprop", "onecycle"), ("sgd", "none")],
)
def test_optimizers_and_schedulers_train(tmp_path, optimizer, scheduler):
    model = MNISTClassifier(
        hidden_sizes=[16],
        optimizer=optimizer,
        momentum=0.9 if optimizer == "sgd" else 0.0,
        lr=0.01,
        scheduler=scheduler,
        step_size=1,
        patience=5,
    )
    data = small_data(train_subset=128, val_size=64)
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=2, logger=False)
    trainer.fit(model, data)
    assert trainer.global_step == 4
    opt = trainer.optimizers[0]
    assert type(opt).__name__.lower() == optimizer
    lr = opt.param_groups[0]["lr"]
    if scheduler == "plateau":  # two epochs never exhaust a patience of 5: unchanged
        assert lr == 0.01 and type(trainer.lr_scheduler_configs[0].scheduler).__name__ == "ReduceLROnPlateau"
    else:
        assert lr == pytest.approx(reference_lr(scheduler, steps=4, epochs=2, lr=0.01), abs=1e-12)
    if scheduler == "step":
        assert lr == pytest.approx(0.01 * 0.1**2)
    if scheduler in ("cosine", "onecycle"):
        assert lr != 0.01  # the schedule moved the rate (the reference above says by how much)


# -- data ----------------------------------------------------------------------------------------
def test_bundled_source_is_real_mnist(mnist_bundled):
    images, labels, test_images, test_labels = mnist_bundled
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert test_images.shape == (10000, 28, 28) and len(test_labels) == 10000
    assert images.max() == 255 and images.min() == 0
    assert torch.bincount(labels).min() > 5000  # every digit present


def test_files_source_is_preferred_and_logged(tmp_path, mnist_bundled, caplog):
    """MNIST files already in data_dir (torchvision's raw layout) win over the bundled copy."""
    images, labels, test_images, test_labels = mnist_bundled
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def write_idx(path, array):
        array = np.asarray(array, dtype=np.uint8)
        magic = {1: 0x801, 3: 0x803}[array.ndim]
        header = np.array([magic, *array.shape], dtype=">i4").tobytes()
        path.write_bytes(header + array.tobytes())

    write_idx(raw / "train-images-idx3-ubyte", images[:1200].numpy())
    write_idx(raw / "train-labels-idx1-ubyte", labels[:1200].numpy())
    write_idx(raw / "t10k-images-idx3-ubyte", test_images[:300].numpy())
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels[:300].numpy())
    data = MNISTDataModule(data_dir=str(tmp_path), download=False, bundled=False, val_size=200)
    data.setup("fit")
    assert data.source == "files"
    assert len(data.train[0]) == 1000 and len(data.val[0]) == 200 and len(data.test[0]) == 300
    assert torch.equal(data.test[0], test_images[:300])


def test_missing_data_with_downloads_forbidden_is_clear(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path / "nowhere"), download=False, bundled=False)
    with pytest.raises(FileNotFoundError, match="No MNIST found in .*nowhere and downloading is off"):
        data.setup("fit")


def test_split_is_seeded_and_disjoint():
    a, b, c = (MNISTDataModule(download=False, seed=s, val_size=5000) for s in (1, 1, 2))
    for d in (a, b, c):
        d.setup("fit")
    assert torch.equal(a.val[1], b.val[1]) and not torch.equal(a.val[1], c.val[1])
    assert len(a.train[0]) == 55000 and len(a.val[0]) == 5000
    # disjoint: no validation image also appears in training (compare by hashing rows)
    train_keys = {bytes(x.numpy()) for x in a.train[0][:20000]}
    assert not any(bytes(x.numpy()) in train_keys for x in a.val[0][:200])


def test_k_fold_validation_sets_cover_the_data_once(mnist_bundled):
    images = mnist_bundled[0]
    vals = []
    for i in range(3):
        d = MNISTDataModule(download=False, folds=3, fold=i)
        d.setup("fit")
        train_idx, val_idx = d.split_indices["train"], d.split_indices["val"]
        assert len(val_idx) == 20000 and len(train_idx) == 40000
        # each fold: train and validation are disjoint and together are the whole training set
        assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(60000))
        assert torch.equal(d.val[0], images[val_idx]) and torch.equal(d.train[0], images[train_idx])
        vals.append(val_idx)
    # the validation folds are pairwise disjoint and cover the data exactly once
    assert torch.equal(torch.cat(vals).sort().values, torch.arange(60000))
    with pytest.raises(ValueError, match="--data.fold must be in"):
        MNISTDataModule(folds=3, fold=3)


def test_predict_folder_of_any_size_images(tmp_path, mnist_bundled):
    """A digit drawn dark-on-light, large, off-centre, saved as PNG/JPEG, becomes an MNIST-like digit."""
    _, _, test_images, test_labels = mnist_bundled
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(4):
        digit = Image.fromarray(255 - test_images[i].numpy()).resize((140, 140))  # ink on paper, 5x size
        canvas = Image.new("L", (300, 200), 255)
        canvas.paste(digit, (150, 30))
        canvas.convert("RGB").save(folder / f"digit{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")
    data = small_data(predict_path=str(folder))
    data.setup("predict")
    images, names = next(iter(data.predict_dataloader()))
    assert images.shape == (4, 28, 28) and images.dtype == torch.uint8
    assert [n.rsplit("/", 1)[-1] for n in names] == ["digit0.jpg", "digit1.png", "digit2.jpg", "digit3.png"]
    # the centred version resembles the original MNIST digit much more than a blank or shifted one
    for img, original in zip(images, test_images[:4]):
        a, b = img.float().flatten(), original.float().flatten()
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.6
        ys, xs = torch.nonzero(img, as_tuple=True)
        assert abs(ys.float().mean() - 14) < 3 and abs(xs.float().mean() - 14) < 3


def test_predict_inputs_errors(tmp_path):
    with pytest.raises(ValueError, match="blank"):
        preprocess_digit(Image.new("L", (50, 50), 255))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    data = small_data(predict_path=str(bad))
    with pytest.raises(ValueError, match="not a readable image"):
        data.predict_dataloader()
    data = small_data(predict_path=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.predict_dataloader()


def test_tensor_batches_shuffle_and_ddp_shards():
    x = torch.arange(103)
    single = TensorBatches([x, x * 2], batch_size=10, shuffle=True, drop_last=True, seed=3)
    first, second = [torch.cat([b[0] for b in single]) for _ in range(2)]
    assert len(single) == 10 and len(first) == 100 and not torch.equal(first, second)  # reshuffled per epoch
    batch = next(iter(single))
    assert torch.equal(batch[1], batch[0] * 2)  # tensors stay aligned
    shards = [TensorBatches([x], batch_size=8, shuffle=True, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([b[0] for b in s]) for s in shards]
    assert len(shards[0]) == len(shards[1])
    assert len(seen[0]) == len(seen[1]) == 51
    assert not set(seen[0].tolist()) & set(seen[1].tolist())  # ranks see disjoint samples
    ordered = TensorBatches([x], batch_size=50)
    assert [len(b[0]) for b in ordered] == [50, 50, 3]


def test_augment_shifts_training_batches_only(tmp_path):
    data = small_data(augment=True)
    data.setup("fit")
    images = data.train[0][:16]

    class FakeTrainer:  # the augmentation only asks whether the trainer is training
        training = True

    data.trainer = FakeTrainer()
    shifted, _ = data.on_after_batch_transfer((images, torch.zeros(16)), 0)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert not torch.equal(shifted, images)
    FakeTrainer.training = False
    same, _ = data.on_after_batch_transfer((images, torch.zeros(16)), 0)
    assert torch.equal(same, images)


def test_cnn_with_augmentation_trains_with_model_summary(tmp_path):
    """The summary forwards the example input through the batch hooks; augmentation must let it pass."""
    model = MNISTClassifier(arch="cnn", cnn_channels=[4, 8], hidden_sizes=[16], batch_norm=True, scheduler="onecycle")
    trainer = tiny_trainer(tmp_path, enable_model_summary=True, limit_train_batches=3, logger=False)
    trainer.fit(model, small_data(augment=True))
    assert trainer.global_step == 3


# -- callbacks ------------------------------------------------------------------------------------
def test_gradient_histograms_every_n_steps(tmp_path):
    model = MNISTClassifier(hidden_sizes=[16])
    trainer = tiny_trainer(
        tmp_path, callbacks=[GradientHistograms(every_n_steps=3), EpochStats()], limit_train_batches=7
    )
    trainer.fit(model, small_data())
    acc = events(tmp_path)
    tags = acc.Tags()
    assert "weights/net.1.weight" in tags["histograms"] and "gradients/net.1.weight" in tags["histograms"]
    assert [e.step for e in acc.Histograms("gradients/net.1.weight")] == [0, 3, 6]
    norms = acc.Scalars("grad_norm/total")
    assert [e.step for e in norms] == [0, 3, 6] and all(e.value > 0 for e in norms)
    for name in ("perf/epoch_time_s", "perf/samples_per_s", "perf/peak_memory_mb"):
        assert acc.Scalars(name)[0].value > 0
    with pytest.raises(ValueError, match="every_n_steps"):
        GradientHistograms(every_n_steps=0)


def test_csv_prediction_writer(tmp_path):
    model = MNISTClassifier(hidden_sizes=[16])
    data = small_data(eval_batch_size=64)
    trainer = tiny_trainer(tmp_path, callbacks=[CSVPredictionWriter()], logger=False, limit_predict_batches=2)
    trainer.predict(model, data, return_predictions=False)
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 128
    assert list(rows[0]) == ["input", "prediction", *(f"p_{d}" for d in range(10))]
    probs = [float(rows[0][f"p_{d}"]) for d in range(10)]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert int(rows[0]["prediction"]) == int(np.argmax(probs))


def test_batch_size_of():
    assert batch_size_of((torch.zeros(5, 2), torch.zeros(5))) == 5
    assert batch_size_of({"input_ids": torch.zeros(7, 3)}) == 7
    assert batch_size_of(torch.zeros(2)) == 2


def fit_peak_memory_mb(tmp_path, model: MNISTClassifier, batch_size: int) -> float:
    trainer = tiny_trainer(tmp_path, callbacks=[EpochStats()], limit_train_batches=3, limit_val_batches=0)
    trainer.fit(model, small_data(batch_size=batch_size))
    assert float(trainer.logged_metrics["perf/memory_kind"]) == 1  # CPU: tensors live at a step's peak
    return float(trainer.logged_metrics["perf/peak_memory_mb"])


def test_peak_memory_is_what_the_variant_allocates(tmp_path):
    """The CPU memory figure follows the variant: width, batch size and optimizer state, measured."""

    def model(**kwargs):
        seed_everything(0, verbose=False)
        return MNISTClassifier(**kwargs)

    base = fit_peak_memory_mb(tmp_path / "a", model(hidden_sizes=[128]), 64)
    params_mb = sum(p.numel() * 4 for p in model(hidden_sizes=[128]).parameters()) / 2**20
    assert 4 * params_mb <= base < 4 * params_mb + 2  # params + grads + Adam's two moments, + activations
    assert fit_peak_memory_mb(tmp_path / "b", model(hidden_sizes=[512, 512]), 64) > 4 * base
    assert fit_peak_memory_mb(tmp_path / "c", model(hidden_sizes=[128]), 512) > base + 1  # activations grow
    assert (
        fit_peak_memory_mb(tmp_path / "d", model(hidden_sizes=[128], optimizer="sgd"), 64) < base - 2 * params_mb * 0.9
    )


def test_same_seed_same_final_weights_through_the_cli(tmp_path):
    """`paradis fit` twice with one seed ends with identical weights; another seed does not."""
    from apps.cli import main

    tiny = [
        "--config",
        "configs/mnist.yaml",
        "--data.download",
        "false",
        "--data.train_subset",
        "512",
        "--data.val_size",
        "256",
        "--trainer.limit_train_batches",
        "4",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.max_epochs",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]
    weights = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        main(["fit", *tiny, "--seed_everything", str(seed), "--run_dir", str(tmp_path / name)])
        weights[name] = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert weights["a"].keys() == weights["b"].keys() and len(weights["a"]) > 0
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])
