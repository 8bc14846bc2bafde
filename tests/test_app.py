"""`paradis-app` on real (tiny) checkpoints of all three tasks: through gradio_client against the launched app
(predictions match `paradis predict`, every bad input gets its message, broken checkpoints keep the app serving,
20 concurrent requests) and in headless Chromium driven by Playwright (draw, upload, generate, classify)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from browser import LAUNCH_ARGS, chromium
from PIL import Image
from text_fixtures import make_tiny_distilbert

from apps.app.discovery import discover
from apps.app.main import build_app, parse_args
from apps.app.models import Models
from apps.cli import main as paradis_main
from benchmarks.digits_in_the_wild import mnist_ink, write_photo
from datamodules.digits import preprocess_digit

ROOT = Path(__file__).resolve().parents[1]

MNIST = [
    "--config",
    "configs/mnist.yaml",
    "--data.download",
    "false",
    "--data.train_subset",
    "2048",
    "--trainer.limit_train_batches",
    "30",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]
TEXTS = ["a great , wonderful film", "boring , awful mess", "loved it"]


def paradis(*args: str) -> None:
    """The real `paradis` CLI, in-process (the subprocess start-up would double this file's run time)."""
    with mock.patch("sys.argv", ["paradis"]):
        paradis_main(list(args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """One fit of each task into a runs tree (nested folders), plus the configs to `paradis predict` them."""
    tmp = tmp_path_factory.mktemp("app")
    runs = tmp / "runs"
    paradis("fit", *MNIST, "--run_dir", str(runs / "mnist"))

    ddpm_config = yaml.safe_load(open(ROOT / "tests/configs/ddpm_tiny.yaml"))
    ddpm_config["trainer"].update(max_epochs=1, limit_train_batches=2)
    ddpm_config["trainer"]["callbacks"] = [
        c for c in ddpm_config["trainer"]["callbacks"] if not c["class_path"].endswith("SampleGrid")
    ]
    ddpm_config["model"]["init_args"]["export_on_fit_end"] = False
    ddpm_yaml = tmp / "ddpm.yaml"
    ddpm_yaml.write_text(yaml.safe_dump(ddpm_config))
    paradis("fit", "--config", str(ddpm_yaml), "--run_dir", str(runs / "lab" / "ddpm" / "tiny"))

    text = [
        "--config",
        "tests/configs/text_tiny.yaml",
        "--model.model_name_or_path",
        str(make_tiny_distilbert(tmp / "tiny_distilbert")),
        "--data.data_dir",
        str(tmp / "text_data"),
    ]
    paradis("fit", *text, "--run_dir", str(runs / "text"))

    # Elsewhere: a copy for the test that breaks checkpoints under the running app, and broken files.
    other = tmp / "other_runs"
    shutil.copytree(runs / "mnist", other / "victim")
    (other / "broken" / "checkpoints").mkdir(parents=True)
    (other / "broken" / "config.yaml").write_text("model: {}\n")
    (other / "broken" / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint at all")
    foreign = tmp / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "builtins.exec"}}, foreign)
    return {
        "tmp": tmp,
        "runs": runs,
        "other": other,
        "ddpm": ["--config", str(ddpm_yaml)],
        "text": text,
        "extra": [str(other / "victim" / "checkpoints" / "best.ckpt"), str(foreign), str(tmp / "missing.ckpt")],
    }


def ckpt(runs: dict, run: str, name: str = "best") -> str:
    return str((runs["other" if run == "victim" else "runs"] / run / "checkpoints" / f"{name}.ckpt").resolve())


def launch(runs_dir, checkpoints=()):
    demo = build_app(runs_dir, checkpoints)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return demo, url


@pytest.fixture(scope="module")
def client(runs):
    """The app over the runs tree and, given as --checkpoint paths, a copied MNIST checkpoint and broken files."""
    from gradio_client import Client

    demo, url = launch(runs["runs"], runs["extra"])
    yield Client(url, verbose=False)
    demo.close()


@pytest.fixture(scope="module")
def digits(runs) -> Path:
    """Three MNIST test digits as enlarged PNGs, and files that are not fit to classify."""
    from datamodules.mnist_sources import load_bundled

    folder = runs["tmp"] / "digits"
    folder.mkdir()
    for i, image in enumerate(load_bundled()[2][:3]):
        Image.fromarray(255 - image.numpy()).resize((96, 96)).save(folder / f"{i}.png")  # dark ink on paper
    photographed_digit(folder, 3)  # and one photographed on paper (benchmark set a)
    bad = runs["tmp"] / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image")
    (bad / "fake.png").write_text("not an image either")
    Image.new("L", (5000, 4000)).save(bad / "huge.png")
    Image.new("RGB", (280, 280), "white").save(bad / "blank.png")
    return folder


def upload(path) -> dict:
    from gradio_client import handle_file

    return handle_file(str(path))


def sketch(path) -> dict:
    return {"background": None, "layers": [], "composite": upload(path)}


def confidences(label: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label["confidences"]}


def photographed_digit(folder: Path, index: int) -> Path:
    """A bundled MNIST test digit photographed on synthetic paper by the benchmark's camera (set a)."""
    from datamodules.mnist_sources import load_bundled

    return write_photo(mnist_ink(load_bundled()[2][index].numpy()), np.random.default_rng(index), folder / str(index))


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# -- discovery ------------------------------------------------------------------------------------------------
def test_discovery_groups_runs_by_task_and_reports_broken_files(runs):
    found = discover(runs["runs"], runs["extra"])
    entries, problems = found.entries, found.problems
    assert {task: len(found) for task, found in entries.items()} == {"mnist": 3, "ddpm": 2, "text": 2}
    ddpm = entries["ddpm"][0]
    assert ddpm.label.startswith("lab/ddpm/tiny · best · val/loss ") and " epoch 0 · 20" in ddpm.label
    assert [e.label.split(" · ")[:2] for e in entries["mnist"]][:2] == [["mnist", "best"], ["mnist", "last"]]
    assert all(e.label.split(" · ")[2].startswith("val/acc 0.") for e in entries["mnist"])
    assert entries["mnist"][2].label.startswith(f"{runs['other'] / 'victim'} · best · val/acc")
    assert len(problems) == 2
    assert any("holds a exec, not a MNISTClassifier or DDPM or TextClassifier" in p for p in problems)
    assert any("missing.ckpt does not exist" in p for p in problems)
    found = discover(runs["other"])
    entries, problems = found.entries, found.problems
    assert [e.label.split(" · ")[:2] for e in entries["mnist"]] == [["victim", "best"], ["victim", "last"]]
    assert len(problems) == 1 and "broken/checkpoints/best.ckpt cannot be read" in problems[0]


def test_nothing_to_open_says_which_command_trains_one(tmp_path):
    import gradio as gr

    demo = build_app(tmp_path)
    text = " ".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "Nothing to open" in text
    for command in (
        "paradis fit --config configs/mnist.yaml",
        "paradis fit --config configs/ddpm_silhouettes.yaml",
        "paradis fit --config configs/text_lora_minilm.yaml",
    ):
        assert command in text
    options = parse_args([])
    assert (options.host, options.port, options.share, options.runs_dir) == ("127.0.0.1", 7860, False, "runs")
    assert parse_args(["--share", "--checkpoint", "a.ckpt", "--checkpoint", "b.ckpt"]).checkpoint == [
        "a.ckpt",
        "b.ckpt",
    ]


def test_models_load_once_per_file_version(runs):
    entries = discover(runs["runs"], [ckpt(runs, "mnist")]).entries  # the duplicate is listed once
    assert len(entries["mnist"]) == 2
    models = Models(entries)
    first, lock = models.get(ckpt(runs, "mnist"), "mnist")
    assert models.get(ckpt(runs, "mnist"), "mnist") == (first, lock) and not first.training
    os.utime(ckpt(runs, "mnist"), ns=(0, 0))  # a rewritten checkpoint is loaded again
    assert models.get(ckpt(runs, "mnist"), "mnist")[0] is not first
    with pytest.raises(ValueError, match="Pick a DDPM images checkpoint from the list"):
        models.get(ckpt(runs, "mnist"), "ddpm")


# -- predictions match `paradis predict` --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predicted(runs, digits) -> dict:
    """`paradis predict` of each task: MNIST on the digit files, DDPM 4 images (seed 5, DDPM, 4 steps), the texts."""
    paradis("predict", *MNIST, "--run_dir", str(runs["runs"] / "mnist"), "--data.predict_path", str(digits))
    run = runs["runs"] / "lab" / "ddpm" / "tiny"
    paradis(
        "predict",
        *runs["ddpm"],
        "--run_dir",
        str(run),
        "--data.num_samples",
        "4",
        "--data.predict_batch_size",
        "4",
        "--data.sample_seed",
        "5",
        "--model.sampler",
        "ddpm",
        "--model.sample_steps",
        "4",
    )
    lines = runs["tmp"] / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n")
    paradis("predict", *runs["text"], "--run_dir", str(runs["runs"] / "text"), "--data.predict_file", str(lines))
    return {
        "mnist": read_csv(runs["runs"] / "mnist" / "predictions.csv"),
        "ddpm": np.asarray(Image.open(run / "predictions" / "grid.png").convert("RGB"), dtype=int),
        "text": read_csv(runs["runs"] / "text" / "predictions.csv"),
    }


def test_mnist_matches_paradis_predict(runs, client, digits, predicted):
    rows = predicted["mnist"]
    assert len(rows) == 4
    for row in rows:
        image = digits / Path(row["input"]).name
        for api, value in (("/classify_upload", upload(image)), ("/classify_sketch", sketch(image))):
            label, seen = client.predict(ckpt(runs, "mnist"), value, api_name=api)
            assert label["label"] == row["prediction"], api
            seen = np.asarray(Image.open(seen).convert("L"))  # the 28x28 input, enlarged 8x (nearest)
            assert seen.shape == (224, 224) and np.array_equal(
                seen[::8, ::8], preprocess_digit(Image.open(image)).numpy()
            )
            probs = confidences(label)
            assert all(abs(probs[str(d)] - float(row[f"p_{d}"])) < 1e-5 for d in range(10)), api


def test_ddpm_matches_paradis_predict_with_ema_weights(runs, client, predicted):
    expected = predicted["ddpm"]
    shown, png = client.predict(ckpt(runs, "lab/ddpm/tiny"), 4, 5, "DDPM", 4, api_name="/generate")
    got = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    assert got.shape == expected.shape == (70, 70, 3)  # 2x2 images of 32 px, 2 px padding
    assert np.abs(got - expected).max() <= 1
    shown = np.asarray(Image.open(shown).convert("RGB"), dtype=int)  # enlarged 8x, nearest neighbour
    assert shown.shape == (560, 560, 3) and np.array_equal(shown[::8, ::8], got)
    checkpoint = torch.load(ckpt(runs, "lab/ddpm/tiny"), weights_only=True)
    assert any(not torch.equal(checkpoint["state_dict"][k], v) for k, v in checkpoint["current_model_state"].items())
    # 40 steps: long enough for the 20 ms polling below to see progress on a loaded machine
    job = client.submit(ckpt(runs, "lab/ddpm/tiny"), 4, 6, "DDIM", 40, api_name="/generate")
    seen = set()
    while not job.done():
        progress = job.status().progress_data
        seen.update((p.index, p.length, p.unit) for p in progress or [] if p.index is not None)
        time.sleep(0.02)
    assert seen and all(length == 40 and unit == "steps" for _, length, unit in seen), seen  # gr.Progress per step
    assert not np.array_equal(np.asarray(Image.open(job.result()[1]).convert("RGB"), dtype=int), got)


def test_text_matches_paradis_predict_and_says_when_truncated(runs, client, predicted):
    rows = predicted["text"]
    label, table, note = client.predict(ckpt(runs, "text"), "\n".join(TEXTS), True, api_name="/classify_text")
    assert [r[0] for r in table["data"]] == [r["input"] for r in rows] == TEXTS
    for got, row in zip(table["data"], rows):
        assert got[1] == row["prediction"]
        assert abs(got[2] - float(row["p_negative"])) < 1e-3 and abs(got[3] - float(row["p_positive"])) < 1e-3
    assert label["label"] == rows[0]["prediction"] and note == ""
    _, table, note = client.predict(ckpt(runs, "text"), "a great film " * 40, True, api_name="/classify_text")
    assert table["data"][0][-1] == "yes" and "Truncated" in note and "32 tokens" in note


# -- the HTTP API with curl, as the README shows it --------------------------------------------------------------
def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def curl_call(url: str, api: str, data: list) -> list:
    """POST /gradio_api/call/<api> {"data": [...]} -> event id; GET .../<event id> streams `event: complete`."""
    event = json.loads(
        curl("-H", "Content-Type: application/json", "-d", json.dumps({"data": data}), f"{url}gradio_api/call/{api}")
    )["event_id"]
    stream = curl("-N", f"{url}gradio_api/call/{api}/{event}")
    assert "event: complete" in stream, stream
    return json.loads(stream.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])


def test_curl_api_matches_paradis_predict(runs, client, digits, predicted):
    url = client.src if client.src.endswith("/") else client.src + "/"
    for row in predicted["mnist"]:
        uploaded = json.loads(curl("-F", f"files=@{digits / Path(row['input']).name}", f"{url}gradio_api/upload"))[0]
        label, seen = curl_call(
            url, "classify_upload", [ckpt(runs, "mnist"), {"path": uploaded, "meta": {"_type": "gradio.FileData"}}]
        )
        assert label["label"] == row["prediction"]
        probs = confidences(label)
        assert all(abs(probs[str(d)] - float(row[f"p_{d}"])) < 1e-5 for d in range(10))
        assert seen["url"].endswith(".png")
    shown, png = curl_call(url, "generate", [ckpt(runs, "lab/ddpm/tiny"), 4, 5, "DDPM", 4])
    with urllib.request.urlopen(png["url"]) as response:
        got = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"), dtype=int)
    assert got.shape == predicted["ddpm"].shape and np.abs(got - predicted["ddpm"]).max() <= 1
    label, table, note = curl_call(url, "classify_text", [ckpt(runs, "text"), "\n".join(TEXTS), True])
    assert [r[1] for r in table["data"]] == [r["prediction"] for r in predicted["text"]] and note == ""


# -- bad input and broken checkpoints --------------------------------------------------------------------------------
BAD = [
    (
        "/classify_sketch",
        "mnist",
        lambda d: ({"background": None, "layers": [], "composite": None},),
        "The sketch is empty",
    ),
    ("/classify_sketch", "mnist", lambda d: (sketch(d.parent / "bad" / "blank.png"),), "The image is blank"),
    ("/classify_upload", "mnist", lambda d: (None,), "No image: upload a PNG or JPEG"),
    ("/classify_upload", "mnist", lambda d: (upload(d.parent / "bad" / "notes.txt"),), "Invalid file type"),
    (
        "/classify_upload",
        "mnist",
        lambda d: (upload(d.parent / "bad" / "fake.png"),),
        "fake.png is not a readable image",
    ),
    ("/classify_upload", "mnist", lambda d: (upload(d.parent / "bad" / "huge.png"),), "5000x4000 pixels, too large"),
    ("/generate", "lab/ddpm/tiny", lambda d: (65, 0, "DDIM", 3), "greater than maximum value 64"),
    ("/generate", "lab/ddpm/tiny", lambda d: (4, 0, "DDIM", 0), "less than minimum value 1"),
    ("/classify_text", "text", lambda d: ("   \n ", True), "The text is empty"),
    ("/classify_text", "text", lambda d: ("\n".join(["fine"] * 65), True), "65 lines at once is too many"),
    ("/classify_text", "text", lambda d: ("x" * 100_001, False), "characters; paste at most 100,000"),
]


@pytest.mark.parametrize("api, run, inputs, message", BAD, ids=[f"{b[0][1:]}-{b[3][:20]}" for b in BAD])
def test_bad_input_is_a_clear_error(runs, client, digits, api, run, inputs, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(ckpt(runs, run), *inputs(digits), api_name=api)


def test_checkpoints_only_from_the_list_and_broken_ones_keep_the_app_serving(runs, client, digits):
    from gradio_client.exceptions import AppError

    image = upload(digits / "0.png")
    for path in (str(runs["tmp"] / "foreign.ckpt"), ckpt(runs, "text"), "/etc/passwd"):
        with pytest.raises(Exception, match="not in the list of choices|Pick a MNIST digits checkpoint"):
            client.predict(path, image, api_name="/classify_upload")
    victim = Path(ckpt(runs, "victim"))
    good = client.predict(str(victim), image, api_name="/classify_upload")[0]
    assert "Loaded best.ckpt" in client.predict(str(victim), api_name="/open_mnist")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated under the running app
    with pytest.raises(AppError, match="cannot be read .*corrupt, truncated"):
        client.predict(str(victim), image, api_name="/classify_upload")
    assert "Cannot open this checkpoint" in client.predict(str(victim), api_name="/open_mnist")
    shutil.copy(ckpt(runs, "lab/ddpm/tiny"), victim)  # a checkpoint of the wrong task
    with pytest.raises(AppError, match="holds a DDPM images model, not a MNIST digits one"):
        client.predict(str(victim), image, api_name="/classify_upload")
    victim.unlink()
    with pytest.raises(AppError, match="does not exist any more"):
        client.predict(str(victim), image, api_name="/classify_upload")
    victim.write_bytes(data)
    os.utime(victim)
    assert client.predict(str(victim), image, api_name="/classify_upload")[0] == good


def test_twenty_concurrent_requests_are_all_answered(runs, client, digits):
    expected_digit = client.predict(ckpt(runs, "mnist"), upload(digits / "1.png"), api_name="/classify_upload")[0]
    expected_text = client.predict(ckpt(runs, "text"), TEXTS[0], False, api_name="/classify_text")[0]
    jobs = [
        client.submit(ckpt(runs, "mnist"), upload(digits / "1.png"), api_name="/classify_upload")
        if i % 2
        else client.submit(ckpt(runs, "text"), TEXTS[0], False, api_name="/classify_text")
        for i in range(20)
    ]
    results = [job.result(timeout=120) for job in jobs]
    assert all(r[0] == expected_digit for r in results[1::2])
    assert all(r[0] == expected_text for r in results[0::2])


# -- real browser --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(runs):
    """Chromium on the app over the runs tree alone (what the README screenshots show)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium()), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        demo, url = launch(runs["runs"])
        page.goto(url)
        yield page
        browser.close()
        demo.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("PARADIS_SCREENSHOTS"):
        target = Path(os.environ["PARADIS_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


def test_browser_draw_and_upload_a_digit(page, client, runs, digits, tmp_path):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="MNIST digits").click()
    pad = page.locator("#sketch")
    pad.locator("button[aria-label='Brush']").click()
    canvas = pad.locator(".pixi-target canvas").first
    box = canvas.bounding_box()
    x, top, height = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2, box["height"] * 0.6
    stroke = [(-0.3, 0), (-0.1, 0), (0.1, 0), (0.3, 0), (0.22, 0.25), (0.14, 0.5), (0.06, 0.75), (-0.02, 1)]  # a "7"
    page.mouse.move(x + stroke[0][0] * height, top)
    page.mouse.down()
    for dx, dy in stroke[1:]:  # few moves: each costs ~0.1 s of software WebGL
        page.mouse.move(x + dx * height, top + dy * height, steps=2)
    page.mouse.up()
    page.get_by_role("button", name="Classify the drawing").click()
    label = page.locator("#digit-label [data-testid='label-output-value']")
    label.wait_for()
    expect(label).to_have_text("7")  # 30 Adam steps already read a clear 7 (~90 %)
    assert page.locator("#digit-label meter").count() == 10
    screenshot(page, tmp_path, "mnist")  # the drawing and its prediction

    assert page.evaluate("() => document.querySelector('#digit-seen img').naturalWidth") == 224  # the 28x28, 8x

    photo = photographed_digit(runs["tmp"], 7)  # benchmark set (a): an MNIST digit photographed on paper
    page.locator("#digit-upload input[type='file']").set_input_files(str(photo))
    page.get_by_role("button", name="Classify the upload").click()
    expected, seen = client.predict(ckpt(runs, "mnist"), upload(photo), api_name="/classify_upload")
    expect(label).to_have_text(expected["label"])
    shown = page.evaluate("() => document.querySelector('#digit-seen img').src")
    with urllib.request.urlopen(shown) as response:  # the page shows what the model saw in the photo
        assert np.array_equal(
            np.asarray(Image.open(io.BytesIO(response.read())).convert("L")), np.asarray(Image.open(seen).convert("L"))
        )


def test_browser_generate_a_grid(page, tmp_path):
    page.get_by_role("tab", name="DDPM images").click()
    steps = page.locator("#ddpm-steps input[type='number']")
    steps.fill("10")
    steps.press("Enter")
    page.get_by_role("button", name="Generate").click()
    image = page.locator("#ddpm-grid img")
    image.wait_for()
    assert page.evaluate("() => document.querySelector('#ddpm-grid img').naturalWidth") == 4 * (
        4 * 32 + 5 * 2
    )  # 16, 4 a row, 4x
    link = page.locator("#ddpm-download a[data-testid='download-link']")
    link.wait_for()
    assert link.get_attribute("download").endswith(".png")
    with page.expect_download() as download:
        link.click()
    assert Image.open(download.value.path()).size == (4 * 32 + 5 * 2,) * 2  # the grid as `paradis predict` saves it
    screenshot(page, tmp_path, "ddpm")


def test_browser_classify_a_text(page, tmp_path):
    page.get_by_role("tab", name="Text").click()
    page.locator("#text-input textarea").fill("\n".join(TEXTS))
    page.get_by_role("button", name="Classify").click()
    label = page.locator("#text-label [data-testid='label-output-value']")
    label.wait_for()
    assert label.inner_text().strip() in ("negative", "positive")
    assert page.locator("#text-label meter").count() == 2
    screenshot(page, tmp_path, "text")
