"""Text classifier: LoRA on a tiny local DistilBERT and the bundled MiniLM, small checkpoints,
resume (exact, mid-epoch), export, the data module's file formats and bad rows, the resumable and
sharded training order, and the CLI end to end (offline)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from text_fixtures import make_tiny_distilbert
from torchdata.stateful_dataloader import StatefulDataLoader

from apps.export_text import load_classifier
from datamodules.text import TextDataModule
from datamodules.text_batches import LengthGroupedOrder
from datamodules.text_files import load_bundled_reviews, stratified_split
from lightning_modules.text import TextClassifier, lora_targets
from paradis.safety.resume import ExactResume

POSITIVE = [
    "a great film",
    "wonderful and moving",
    "brilliant acting, loved it",
    "a delight from start to end",
    "funny and warm",
]
NEGATIVE = [
    "a dull mess",
    "boring and far too long",
    "terrible script, awful acting",
    "i hated every minute",
    "a tedious bore",
]
SAMPLES = ["a great , wonderful film", "boring , awful mess", "loved it"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(make_tiny_distilbert(tmp_path_factory.mktemp("tiny_distilbert")))


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text_data") / "reviews.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in range(8):
            for text in POSITIVE:
                writer.writerow([f"{text} {i}", "pos"])
            for text in NEGATIVE:
                writer.writerow([f"{text} {i}", "neg"])
    return path


def datamodule(path, tokenizer, tmp_path, **kwargs) -> TextDataModule:
    kwargs = {
        "text_column": "review",
        "label_column": "sentiment",
        "tokenizer": tokenizer,
        "max_length": 32,
        "data_dir": str(tmp_path / "data"),
        "batch_size": 8,
        "eval_batch_size": 16,
        **kwargs,
    }
    return TextDataModule(train_file=str(path), **kwargs)


def quick_trainer(tmp_path, **kwargs) -> Trainer:
    kwargs = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "limit_train_batches": 3,
        "limit_val_batches": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
        **kwargs,
    }
    return Trainer(**kwargs)


def probabilities(module: TextClassifier) -> torch.Tensor:
    return module.classify(SAMPLES)[0]


# -- model ------------------------------------------------------------------------------------
def test_lora_targets_follow_the_architecture(tiny):
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(
        BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    assert lora_targets(bert) == ["query", "value"]
    module = TextClassifier(model_name_or_path=tiny, lora_r=4)
    module.build(["neg", "pos"])
    assert json.loads(module.peft_config_json)["target_modules"] == ["q_lin", "v_lin"]
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    assert any("q_lin.lora_A" in n for n in trainable) and any("v_lin.lora_B" in n for n in trainable)
    # only the adapter and the (new) head train: DistilBERT's pre_classifier + classifier
    assert all("lora_" in n or "modules_to_save" in n for n in trainable), trainable
    assert any("pre_classifier.modules_to_save" in n for n in trainable)
    assert any(n.endswith("classifier.modules_to_save.default.weight") for n in trainable)
    trained, total = module.parameter_counts()
    assert 0 < trained < 0.05 * total
    with pytest.raises(ValueError, match="target_modules"):
        TextClassifier(model_name_or_path=tiny, target_modules=["nope"]).build(["a", "b"])
    with pytest.raises(ValueError, match="target_modules"):  # a suffix must end at a module boundary
        TextClassifier(model_name_or_path=tiny, target_modules=["_lin"]).build(["a", "b"])
    suffixes = TextClassifier(
        model_name_or_path=tiny, target_modules=["attention.q_lin", "ffn.lin1"]
    )  # peft: suffixes too
    suffixes.build(["a", "b"])
    assert sorted(json.loads(suffixes.peft_config_json)["target_modules"]) == ["attention.q_lin", "ffn.lin1"]
    with pytest.raises(ValueError, match="peft_method"):
        TextClassifier(peft_method="adapters")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_classifier("no/such.ckpt")


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning"])
def test_prompt_methods_train_only_prompt_and_head(tiny, method):
    module = TextClassifier(model_name_or_path=tiny, peft_method=method, num_virtual_tokens=4)
    module.build(["neg", "pos"])
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("prompt_encoder" in n or "modules_to_save" in n for n in trainable), trainable
    probs, truncated = module.classify(SAMPLES)
    assert probs.shape == (3, 2) and torch.allclose(probs.sum(-1), torch.ones(3)) and truncated == [False] * 3


def test_small_checkpoint_restores_identical_predictions_and_resumes(tiny, reviews_csv, tmp_path):
    seed_everything(0)
    data = datamodule(reviews_csv, tiny, tmp_path)
    module = TextClassifier(model_name_or_path=tiny, lr=1e-2, class_names=data.class_names)
    trainer = quick_trainer(tmp_path)
    trainer.fit(module, datamodule=data)
    ckpt = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(ckpt)
    expected = probabilities(module)

    # Small: only adapter + head, not the frozen base (compare with a full fine-tuning checkpoint).
    full = TextClassifier(model_name_or_path=tiny, peft_method="full")
    full.build(["neg", "pos"])
    torch.save(full.state_dict(), tmp_path / "full.pt")  # weights only: a full checkpoint is larger still
    lora_size, full_size = ckpt.stat().st_size, (tmp_path / "full.pt").stat().st_size
    assert lora_size < full_size / 20, (lora_size, full_size)
    saved = torch.load(ckpt, weights_only=True)
    assert all("lora_" in k or "modules_to_save" in k for k in saved["state_dict"])
    assert saved["text_model"]["class_names"] == ["neg", "pos"] and saved["text_model"]["base_model"] == tiny

    # Reload three ways: Lightning's load_from_checkpoint, the export app's loader (checks the file first), and
    # trainer.predict(ckpt_path=...) into a model given no class names (the checkpoint builds it).
    assert torch.equal(probabilities(TextClassifier.load_from_checkpoint(ckpt)), expected)
    assert torch.equal(probabilities(load_classifier(ckpt)), expected)
    fresh = TextClassifier(model_name_or_path=tiny)
    quick_trainer(tmp_path).predict(fresh, datamodule=datamodule(reviews_csv, tiny, tmp_path), ckpt_path=ckpt)
    assert torch.equal(probabilities(fresh), expected)

    # Resume (fit --ckpt_path): weights, step and optimizer state come back.
    resumed = TextClassifier(model_name_or_path=tiny, lr=1e-2)
    resume_trainer = quick_trainer(tmp_path)
    resume_trainer.fit(resumed, datamodule=datamodule(reviews_csv, tiny, tmp_path), ckpt_path=ckpt)
    assert resume_trainer.global_step == trainer.global_step == 3
    assert torch.equal(probabilities(resumed), expected)
    assert len(resume_trainer.optimizers[0].state) == len(trainer.optimizers[0].state) > 0

    # A checkpoint for other labels is refused with a clear message.
    other = TextClassifier(model_name_or_path=tiny)
    other.build(["a", "b", "c"])
    with pytest.raises(ValueError, match="checkpoint classifies"):
        other.on_load_checkpoint(saved)


def test_export_adapter_and_merged_model(tiny, reviews_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from apps.export_text import export

    module = TextClassifier(model_name_or_path=tiny, lr=1e-2, class_names=["neg", "pos"])
    quick_trainer(tmp_path, limit_train_batches=2).fit(module, datamodule=datamodule(reviews_csv, tiny, tmp_path))
    ckpt = tmp_path / "m.ckpt"
    module.trainer.save_checkpoint(ckpt)
    expected = probabilities(module)
    written = export(ckpt, tmp_path / "export", merged=True)
    assert (written["adapter"] / "adapter_model.safetensors").is_file()
    merged = AutoModelForSequenceClassification.from_pretrained(written["merged"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(written["merged"])
    with torch.no_grad():
        probs = merged(**tokenizer(SAMPLES, padding=True, return_tensors="pt")).logits.softmax(-1)
        base = AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2)
        adapter = PeftModel.from_pretrained(base, written["adapter"]).eval()
        adapter_probs = adapter(**tokenizer(SAMPLES, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert merged.config.id2label == {0: "neg", 1: "pos"}
    assert torch.allclose(probs, expected, atol=1e-5) and torch.allclose(adapter_probs, expected, atol=1e-5)


def test_bundled_minilm_loads_offline_and_learns():
    seed_everything(0)
    module = TextClassifier(model_name_or_path="bundled:minilm", max_length=32)
    module.build(["negative", "positive"])
    assert json.loads(module.peft_config_json)["target_modules"] == ["query", "value"]
    texts = POSITIVE + NEGATIVE
    batch = module.tokenizer(texts, padding=True, return_tensors="pt")
    labels = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    module.train()
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(module(batch["input_ids"], batch["attention_mask"]), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# -- data ---------------------------------------------------------------------------------------
def write_rows(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_each_file_format_reads_the_same(tiny, tmp_path, suffix):
    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE] + [{"review": t, "sentiment": "neg"} for t in NEGATIVE]
    path = write_rows(tmp_path / f"reviews{suffix}", rows * 2)
    data = datamodule(path, tiny, tmp_path, val_fraction=0.2, test_fraction=0.2)
    data.setup("fit")
    assert data.class_names == ["neg", "pos"]
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1]  # stratified
    batch = next(iter(data.train_dataloader()))
    longest = int(batch["attention_mask"].sum(1).max())
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] == longest < 32  # padded per batch to its longest text (CPU), not to max_length
    eight = datamodule(path, tiny, tmp_path, val_fraction=0.2, test_fraction=0.2, pad_to_multiple_of=8)
    eight.setup("fit")
    assert next(iter(eight.train_dataloader()))["input_ids"].shape[1] % 8 == 0  # the CUDA default


def test_label_mapping_integer_and_named(tiny, tmp_path):
    rows = [{"review": f"text {i}", "sentiment": i % 3} for i in range(12)]
    train = write_rows(tmp_path / "train.jsonl", rows)
    named = datamodule(
        train, tiny, tmp_path, labels=["sad", "neutral", "happy"], val_file=str(train), test_file=str(train)
    )
    named.setup("fit")
    assert named.class_names == ["sad", "neutral", "happy"]
    assert named.val.labels.tolist() == [i % 3 for i in range(12)]  # given files keep their order
    plain = datamodule(train, tiny, tmp_path, val_file=str(train), test_file=str(train))
    assert plain.class_names == ["0", "1", "2"]
    chosen = datamodule(
        write_rows(tmp_path / "n.csv", [{"review": "x", "sentiment": s} for s in "bab"]),
        tiny,
        tmp_path,
        labels=["b", "a"],
    )
    assert chosen.class_names == ["b", "a"]


@pytest.mark.filterwarnings("ignore:.*(empty text|unknown label)")  # (recorded and checked in the first part)
def test_bad_rows_are_reported_with_line_numbers(tiny, tmp_path):
    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE] + [{"review": t, "sentiment": "neg"} for t in NEGATIVE]
    rows[1]["review"] = "   "  # line 3 of the CSV (line 1 = header)
    rows[4]["sentiment"] = "meh"  # line 6
    path = write_rows(tmp_path / "bad.csv", rows)
    data = datamodule(path, tiny, tmp_path, labels=["neg", "pos"], val_fraction=0.2, test_fraction=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.setup("fit")
    messages = " ".join(str(w.message) for w in caught)
    assert "empty text at line 3" in messages and "unknown label ('meh'" in messages and "at line 6" in messages
    assert len(data.train) + len(data.val) + len(data.test) == 8
    with pytest.raises(ValueError, match="no column 'text'"):
        datamodule(path, tiny, tmp_path, text_column="text").setup("fit")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datamodule(tmp_path / "missing.csv", tiny, tmp_path).setup("fit")
    with pytest.raises(ValueError, match="holds no usable row"):
        datamodule(path, tiny, tmp_path, labels=["x", "y"]).setup("fit")


def test_tokenisation_is_cached_and_length_grouping(tiny, reviews_csv, tmp_path):
    data = datamodule(reviews_csv, tiny, tmp_path)
    data.setup("fit")
    cache = sorted((tmp_path / "data" / "cache").glob("*.pt"))
    assert [p.name.split("-")[0] for p in cache] == ["test", "train", "val"]
    stamps = [p.stat().st_mtime_ns for p in cache]
    again = datamodule(reviews_csv, tiny, tmp_path)
    again.setup("fit")
    assert [p.stat().st_mtime_ns for p in cache] == stamps and torch.equal(again.train.ids, data.train.ids)
    assert len(list((tmp_path / "data" / "cache").glob("*.pt"))) == 3
    datamodule(reviews_csv, tiny, tmp_path, max_length=16).setup("fit")  # another max length: new cache entries
    assert len(list((tmp_path / "data" / "cache").glob("*.pt"))) == 6

    lengths = [(i * 37) % 50 + 1 for i in range(400)]
    sampler = LengthGroupedOrder(lengths, batch_size=8, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(400))
    grouped = sum(max(lengths[i] for i in order[k : k + 8]) for k in range(0, 400, 8))
    plain = sum(max(lengths[i] for i in range(k, k + 8)) for k in range(0, 400, 8))
    assert grouped < 0.6 * plain
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_train_order_is_sharded_and_resumes_mid_epoch():
    lengths = [(i * 37) % 50 + 1 for i in range(203)]
    # DDP: two ranks share the epoch with no sample twice (the odd one out is dropped), each length-grouped.
    shards = [list(LengthGroupedOrder(lengths, batch_size=8, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 101 and not set(shards[0]) & set(shards[1])
    assert len(set(shards[0]) | set(shards[1])) == 202
    grouped = sum(max(lengths[i] for i in shards[0][k : k + 8]) for k in range(0, 101, 8))
    assert grouped < 0.6 * sum(max(lengths[i] for i in range(k, min(k + 8, 203))) for k in range(0, 101, 8))
    single = LengthGroupedOrder(lengths, batch_size=8, seed=3)
    assert len(list(single)) == 203 and list(single) == list(
        LengthGroupedOrder(lengths, batch_size=8, seed=3)
    )  # seed + epoch
    single.set_epoch(1)
    assert list(single) != list(LengthGroupedOrder(lengths, batch_size=8, seed=3))

    # Mid-epoch state round trip (torchdata's StatefulDataLoader over a TrainOrder, as TextDataModule builds it):
    # a new loader picks up at the next batch of the same epoch's order, on each rank.
    def loader(group=True, replicas=1, rank=0) -> StatefulDataLoader:
        order = LengthGroupedOrder(
            lengths, batch_size=8, seed=3, group_by_length=group, num_replicas=replicas, rank=rank
        )
        return StatefulDataLoader(range(203), batch_size=8, sampler=order)

    for group, replicas, rank in ((True, 1, 0), (False, 1, 0), (True, 2, 0), (True, 2, 1)):
        first = loader(group, replicas, rank)
        first.sampler.set_epoch(2)
        batches = [b.tolist() for b in first]
        it = iter(first)
        for _ in range(5):
            next(it)
        resumed = loader(group, replicas, rank)
        resumed.load_state_dict(first.state_dict())
        resumed.sampler.set_epoch(2)  # what Lightning does at the start of the (resumed) epoch
        assert [b.tolist() for b in resumed] == batches[5:]
        assert [b.tolist() for b in resumed] == batches  # the restored position applies to one pass only
    # A position saved in another epoch (an epoch cut short by limit_train_batches, then the next epoch): not applied.
    cut = loader()
    cut.sampler.set_epoch(2)
    it = iter(cut)
    for _ in range(5):
        next(it)
    later = loader()
    later.load_state_dict(cut.state_dict())
    later.sampler.set_epoch(3)
    cut.sampler.set_epoch(3)
    assert [b.tolist() for b in later] == [b.tolist() for b in cut] and len(list(later)) == 26


class SaveAt(Callback):
    """Save a checkpoint at one global step, mid-epoch (what a mid-epoch `last.ckpt` holds)."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_resume_mid_epoch_gives_identical_weights(tiny, reviews_csv, tmp_path):
    """Two epochs straight, or resumed from a step-11 checkpoint (epoch 1, batch 3 of 8): the same data order,
    bit-identical trained weights and optimizer state, with dropout on (the CLI's ExactResume restores the
    loader position and the RNG states; Lightning alone restores neither here)."""

    def fit(ckpt_path=None, callbacks=()):
        seed_everything(0)
        data = datamodule(reviews_csv, tiny, tmp_path, group_by_length=True, val_fraction=0.1, test_fraction=0.1)
        module = TextClassifier(model_name_or_path=tiny, lr=1e-2, class_names=["neg", "pos"])
        seen = []
        module.on_train_batch_start = lambda batch, batch_idx: seen.append(batch["labels"].tolist())
        trainer = quick_trainer(
            tmp_path, max_epochs=2, limit_train_batches=None, limit_val_batches=0, callbacks=[ExactResume(), *callbacks]
        )
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return module, trainer, seen

    ckpt = tmp_path / "step11.ckpt"
    straight, trainer, seen = fit(callbacks=[SaveAt(11, ckpt)])
    assert trainer.global_step == 16 and len(seen) == 16
    resumed, resume_trainer, seen_after = fit(ckpt_path=ckpt)
    assert resume_trainer.global_step == 16 and seen_after == seen[11:]
    weights = {k: v for k, v in straight.state_dict().items()}
    assert weights.keys() == resumed.state_dict().keys()
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in weights.items())
    a, b = trainer.optimizers[0].state_dict(), resume_trainer.optimizers[0].state_dict()
    assert all(torch.equal(a["state"][i][key], b["state"][i][key]) for i in a["state"] for key in a["state"][i])


def test_cli_resume_is_exact(tiny, tmp_path, capsys):
    """`paradis fit` on the tiny config for 2 epochs, against the same run stopped by Ctrl-C at the end of
    epoch 0 (step 4) and by SIGTERM in the middle of epoch 1 (step 6), resumed with `--ckpt_path last` each
    time: the same weights, optimizer and scheduler state, bit for bit, and (epoch-end stop) the same logged
    metrics. Length-grouped batches, LoRA and classifier dropout, warm-up + linear decay."""
    from resume_tools import ckpt, differences, fit, scalars

    common = [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        tiny,
        "--data.group_by_length",
        "true",
        "--data.data_dir",
        str(tmp_path / "data"),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.callbacks+=probe_callbacks.SignalAt",
    ]  # 1 val batch: a stop signal is then handled after validation
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    never = ["--trainer.callbacks.step", "-1"]
    assert fit(*common, *never, "--run_dir", str(straight)) == 0
    assert (
        fit(
            *common,
            "--trainer.callbacks.step",
            "4",
            "--trainer.callbacks.signal_name",
            "SIGINT",
            "--run_dir",
            str(resumed),
        )
        == 130
    )
    assert ckpt(resumed / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert fit(*common, "--trainer.callbacks.step", "6", "--run_dir", str(resumed), "--ckpt_path", "last") == 143
    assert ckpt(resumed / "checkpoints" / "last.ckpt")["global_step"] == 6
    assert fit(*common, *never, "--run_dir", str(resumed), "--ckpt_path", "last") == 0
    first, second = ckpt(straight / "checkpoints" / "last.ckpt"), ckpt(resumed / "checkpoints" / "last.ckpt")
    assert first["global_step"] == second["global_step"] == 8 and differences(first, second) == []
    logged = scalars(straight)
    epoch0 = {key: values for key, values in scalars(resumed).items() if key[1] <= 4}
    assert epoch0 and all(values[-1] == logged[key][-1] for key, values in epoch0.items())

    # A data file that is not UTF-8: one sentence naming the file and the encoding; the run folder is untouched.
    before = {p: p.read_bytes() for p in straight.rglob("*") if p.is_file()}
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,positive\n".encode("latin-1"))
    capsys.readouterr()
    assert (
        fit(
            *common,
            *never,
            "--run_dir",
            str(straight),
            "--ckpt_path",
            "last",
            "--trainer.max_epochs",
            "3",
            "--data.train_file",
            str(latin1),
        )
        == 2
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"paradis: error: {latin1} is not UTF-8 text (byte 0xe9 at offset 14); save it as UTF-8 "
        "(e.g. `iconv -f latin1 -t utf-8 latin1.csv > utf8_latin1.csv`) and pass that file."
    )
    assert {p: p.read_bytes() for p in straight.rglob("*") if p.is_file()} == before


def test_bundled_reviews_split():
    texts, labels = load_bundled_reviews()
    assert len(texts) == len(set(texts)) > 12000 and set(labels) == {0, 1}
    train, val, test = stratified_split(labels, (0.1, 0.1), seed=0)
    assert len(set(train) | set(val) | set(test)) == len(texts)
    share = sum(labels) / len(labels)
    assert abs(sum(labels[i] for i in val) / len(val) - share) < 0.01
    assert stratified_split(labels, (0.1, 0.1), seed=0)[1] == val  # fixed


# -- CLI end to end ---------------------------------------------------------------------------
def in_process(*args: str) -> int:
    """`paradis ARGS` in this process (no interpreter start-up); the exit code."""
    from apps.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["paradis"])
        try:
            main(list(args))
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def test_cli_fit_test_predict(paradis, tiny, tmp_path, capsys):
    """`fit` through the installed console script; `test` and `predict` through the same CLI in this process."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    common = [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        tiny,
        "--data.data_dir",
        str(tmp_path / "data"),
        "--run_dir",
        str(run),
    ]
    paradis("fit", *common)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert (run / "checkpoints" / "best.ckpt").is_file() and ckpt.stat().st_size < 200_000  # base model: ~4 MB
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    assert {"train/loss_epoch", "val/acc", "val/f1", "params/trainable"} <= set(events.Tags()["scalars"])

    capsys.readouterr()
    assert in_process("test", *common) == 0
    out = capsys.readouterr().out
    assert "test/acc" in out and "test/f1" in out

    predict_file = tmp_path / "new.csv"
    write_rows(predict_file, [{"text": t} for t in SAMPLES])
    assert in_process("predict", *common, "--data.predict_file", str(predict_file)) == 0
    with open(run / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == SAMPLES
    assert set(rows[0]) == {"input", "prediction", "p_negative", "p_positive"}
    assert all(r["prediction"] in ("negative", "positive") for r in rows)
    assert all(abs(float(r["p_negative"]) + float(r["p_positive"]) - 1) < 1e-4 for r in rows)
