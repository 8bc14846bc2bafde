"""The README's course: copy a real course report into docs/ and take its screenshot in headless Chromium.

    .venv/bin/python docs/lab/publish_course.py runs/lab docs/lab

RUNS_DIR is the lab folder of a course run (`paradis-lab configs/lab/{activations,...}.yaml --jobs 2`).
Writes DOCS_DIR/course/ (course.md, course.html and each axis's report.md and figures, the figures
palette-compressed as course.html embeds them, so the Markdown's links resolve) and DOCS_DIR/course.png
(the page down to the side-by-side table). Needs /usr/bin/chromium (tests/browser.py installs Debian's package).
"""

import io
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PIL import Image
from playwright.sync_api import sync_playwright

from apps.lab.course.report import compact_png

runs, docs = Path(sys.argv[1]), Path(sys.argv[2])
out = docs / "course"
out.mkdir(parents=True, exist_ok=True)
for name in ("course.md", "course.html"):
    shutil.copy(runs / name, out / name)
for axis in sorted(p for p in runs.iterdir() if (p / "results.json").exists()):
    (out / axis.name).mkdir(exist_ok=True)
    shutil.copy(axis / "report.md", out / axis.name / "report.md")
    for png in axis.glob("*.png"):
        (out / axis.name / png.name).write_bytes(compact_png(png))

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
        ],
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto((runs / "course.html").resolve().as_uri())
    box = page.locator("table.course + p").bounding_box()  # the "best variant overall" line under the table
    png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": 1100, "height": box["y"] + box["height"] + 16})
    browser.close()
image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
image.save(docs / "course.png", optimize=True)
print(
    f"{out}/ and {docs / 'course.png'}: {image.size[0]}x{image.size[1]}, {(docs / 'course.png').stat().st_size // 1024} KB"
)
