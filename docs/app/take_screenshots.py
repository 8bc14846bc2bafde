"""The README screenshots: paradis-app over trained run folders, driven by headless Chromium.

    .venv/bin/python docs/app/take_screenshots.py RUNS_DIR docs/app

RUNS_DIR holds one trained run folder per task (e.g. runs/ after `paradis fit` of configs/mnist.yaml,
configs/ddpm_silhouettes.yaml and configs/text_lora_minilm.yaml); a task without a run keeps its old
screenshot. Needs /usr/bin/chromium (see tests/test_app.py, which drives the same page on tiny checkpoints).
The MNIST shot draws a 7, then uploads a photographed paper digit (benchmarks/digits_in_the_wild.py's camera).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np
from playwright.sync_api import expect, sync_playwright

from apps.app.discovery import discover
from apps.app.main import build_app
from benchmarks.digits_in_the_wild import mnist_ink, write_photo
from datamodules.mnist_sources import load_bundled

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
found = discover(runs)
demo = build_app(found=found)
demo.queue()
_, url, _ = demo.launch(server_name="127.0.0.1", server_port=7871, prevent_thread_lock=True)
expect.set_options(timeout=120_000)
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
        ],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(url)
    if found.entries["mnist"]:
        page.get_by_role("tab", name="MNIST digits").click()
        pad = page.locator("#sketch")
        pad.locator("button[aria-label='Brush']").click()
        canvas = pad.locator(".pixi-target canvas").first
        box = canvas.bounding_box()
        x, top, height = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2, box["height"] * 0.6
        stroke = [(-0.3, 0), (-0.1, 0), (0.1, 0), (0.3, 0), (0.22, 0.25), (0.14, 0.5), (0.06, 0.75), (-0.02, 1)]
        page.mouse.move(x + stroke[0][0] * height, top)
        page.mouse.down()
        for dx, dy in stroke[1:]:
            page.mouse.move(x + dx * height, top + dy * height, steps=2)
        page.mouse.up()
        page.get_by_role("button", name="Classify the drawing").click()
        label = page.locator("#digit-label [data-testid='label-output-value']")
        label.wait_for()
        print("mnist drawing:", label.inner_text())
        photo = write_photo(
            mnist_ink(load_bundled()[2][11].numpy()), np.random.default_rng(4), out / "photo_of_a_paper_digit"
        )
        page.locator("#digit-upload input[type='file']").set_input_files(str(photo))
        page.get_by_role("button", name="Classify the upload").click()
        expect(label).to_have_text("6")
        photo.unlink()
        time.sleep(1)
        page.screenshot(path=str(out / "mnist.png"), full_page=True)
    if found.entries["ddpm"]:
        page.get_by_role("tab", name="DDPM images").click()
        page.get_by_role("button", name="Generate").click()
        page.locator("#ddpm-grid img").wait_for()
        time.sleep(1)
        page.screenshot(path=str(out / "ddpm.png"), full_page=True)
    if found.entries["text"]:
        page.get_by_role("tab", name="Text").click()
        page.locator("#text-input textarea").fill(
            "\n".join(
                [
                    "A warm, funny and beautifully acted film; I loved every minute.",
                    "Dull, predictable and far too long.",
                    "The script is clever but the direction never finds its rhythm.",
                ]
            )
        )
        page.get_by_role("button", name="Classify").click()
        page.locator("#text-label [data-testid='label-output-value']").wait_for()
        time.sleep(1)
        page.screenshot(path=str(out / "text.png"), full_page=True)
    browser.close()
demo.close()
