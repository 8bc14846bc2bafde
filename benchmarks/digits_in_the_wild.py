"""Digits in the wild: MNIST models on photographed paper digits, main's preprocessing vs datamodules.digits.

    OMP_NUM_THREADS=1 python benchmarks/digits_in_the_wild.py --cnn runs/mnist_cnn/checkpoints/best.ckpt \
        --mlp runs/mnist/checkpoints/best.ckpt [--mnist 2000] [--per-font 5] [--seed 0]

Images are generated offline into a temporary folder (deleted afterwards, never committed), saved as JPEG or
PNG and read back through `load_digit_file` the way `paradis predict` reads a folder:
  (a) "photographed MNIST": bundled MNIST test digits as dark ink on synthetic paper;
  (b) printed digits in every font installed on the machine (`fc-list`), through the same "camera".
The camera (`photograph`) varies: digit height 60-600 px, frame 1.3-2.5x the digit with the digit anywhere
in it, paper grey level and tint, paper texture, a lighting gradient (down to 45 % of the light) and a soft
shadow, ink colour (black, grey, blue, red) and opacity, blur, sensor noise, rotation +-15 deg, JPEG quality
30-95 (or PNG). The clean MNIST test accuracy (the 10k test split as is) is the reference.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.digits import center_by_mass, fit_20, preprocess_digit  # noqa: E402
from datamodules.mnist_sources import load_bundled  # noqa: E402


# -- the synthetic camera --------------------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a few random values per side, resized up bicubically."""
    coarse = Image.fromarray(rng.uniform(0, 255, (cells, cells)).astype(np.uint8))
    return np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.float32) / 127.5 - 1.0


def photograph(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A digit's ink (float [0, 1], tightly cropped) photographed on paper: (the file's bytes, its suffix)."""
    height = int(rng.uniform(60, 600))
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    digit = Image.fromarray((ink * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    digit = digit.rotate(rng.uniform(-15, 15), resample=Image.BICUBIC, expand=True)
    frame_w = int(digit.width * rng.uniform(1.3, 2.5))
    frame_h = int(digit.height * rng.uniform(1.3, 2.5))
    alpha = np.zeros((frame_h, frame_w), dtype=np.float32)
    top, left = int(rng.integers(0, frame_h - digit.height + 1)), int(rng.integers(0, frame_w - digit.width + 1))
    alpha[top : top + digit.height, left : left + digit.width] = np.asarray(digit, dtype=np.float32) / 255
    alpha *= rng.uniform(0.75, 1.0)  # ink opacity

    grey = rng.uniform(165, 250)
    paper = grey + rng.uniform(-12, 12, 3)  # tinted paper
    paper = paper[None, None, :] + 6 * smooth_noise(rng, frame_h, frame_w, 8)[..., None]  # texture
    inks = [(20, 20, 25), (70, 70, 70), (25, 40, 140), (150, 30, 35)]
    colour = np.array(inks[rng.choice(4, p=[0.55, 0.15, 0.2, 0.1])], dtype=np.float32)
    image = paper * (1 - alpha[..., None]) + colour * alpha[..., None]

    ys, xs = np.mgrid[0:frame_h, 0:frame_w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xs / frame_w + np.sin(angle) * ys / frame_h
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
    light = 1.0 - rng.uniform(0.0, 0.55) * ramp  # lighting gradient
    if rng.random() < 0.5:  # a soft shadow across one part of the page
        edge = smooth_noise(rng, frame_h, frame_w, 3) + rng.uniform(-0.3, 0.3)
        light *= 1.0 - rng.uniform(0.1, 0.3) * (1 / (1 + np.exp(-edge * 8)))
    image = image * light[..., None]

    photo = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.012) * height))
    noisy = np.asarray(photo, dtype=np.float32) + rng.normal(0, rng.uniform(2, 12), (frame_h, frame_w, 3))
    photo = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    jpeg = rng.random() < 0.8
    photo.save(buffer, "JPEG", quality=int(rng.uniform(30, 95))) if jpeg else photo.save(buffer, "PNG")
    return buffer.getvalue(), ".jpg" if jpeg else ".png"


def write_photo(ink: np.ndarray, rng: np.random.Generator, stem: Path) -> Path:
    data, suffix = photograph(ink, rng)
    path = stem.with_suffix(suffix)
    path.write_bytes(data)
    return path


def mnist_ink(image: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8 28x28, white on black) as ink in [0, 1], cropped to its box."""
    rows, cols = np.nonzero(image)
    return image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32) / 255


def font_files() -> list[Path]:
    """The fonts installed on this machine (fc-list), else /usr/share/fonts."""
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, check=True).stdout
        files = sorted({Path(line) for line in out.splitlines() if line.endswith((".ttf", ".otf"))})
    except (OSError, subprocess.CalledProcessError):
        files = sorted(Path("/usr/share/fonts").rglob("*.[ot]tf"))
    return files


def font_ink(font: Path, digit: int) -> np.ndarray:
    """The digit printed in `font` at 200 px, as ink in [0, 1], cropped to its box."""
    image = Image.new("L", (320, 320), 0)
    ImageDraw.Draw(image).text((60, 20), str(digit), fill=255, font=ImageFont.truetype(str(font), 200))
    return mnist_ink(np.asarray(image))


# -- main's preprocessing (commit cffa27c), kept to compare ------------------------------------------------
def preprocess_digit_main(image: Image.Image) -> torch.Tensor:
    """`datamodules.mnist.preprocess_digit` as it was on main: invert by the global mean, drop < 10 % of max."""
    pixels = np.asarray(ImageOps.exif_transpose(image).convert("L"), dtype=np.float32)
    if pixels.mean() > 127:
        pixels = 255.0 - pixels
    pixels[pixels < 0.1 * max(pixels.max(), 1.0)] = 0.0
    rows, cols = np.nonzero(pixels)
    if len(rows) == 0:
        raise ValueError("blank")
    return center_by_mass(fit_20(pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]))


# -- evaluation --------------------------------------------------------------------------------------------
def load_model(path: str) -> torch.nn.Module:
    from apps.app.models import load_module

    return load_module(Path(path), "mnist")


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        predictions = torch.cat([model(images[i : i + 1000]).argmax(-1) for i in range(0, len(images), 1000)])
    return 100.0 * float((predictions == labels).float().mean())


def prepare(files: list[Path], function) -> torch.Tensor:
    out = []
    for f in files:
        with Image.open(f) as image:
            try:
                out.append(function(image))
            except ValueError:  # "blank": counts as wrong
                out.append(torch.zeros(28, 28, dtype=torch.uint8))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnn", required=True, help="checkpoint of configs/mnist_cnn.yaml")
    parser.add_argument("--mlp", required=True, help="checkpoint of configs/mnist.yaml")
    parser.add_argument("--mnist", type=int, default=2000, help="photographed MNIST test digits (set a)")
    parser.add_argument("--per-font", type=int, default=5, help="photos of each digit in each font (set b)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    _, _, test_images, test_labels = load_bundled()
    models = {"CNN (mnist_cnn.yaml)": load_model(args.cnn), "MLP (mnist.yaml)": load_model(args.mlp)}
    fonts = font_files()
    with tempfile.TemporaryDirectory() as tmp:
        sets: dict[str, tuple[list[Path], torch.Tensor]] = {}
        pick = rng.choice(len(test_images), args.mnist, replace=False)
        start = time.perf_counter()
        files, labels = [], []
        for n, i in enumerate(pick):
            files.append(write_photo(mnist_ink(test_images[i].numpy()), rng, Path(tmp) / f"a_{n}"))
            labels.append(int(test_labels[i]))
        sets["(a) photographed MNIST"] = (files, torch.tensor(labels))
        files, labels = [], []
        for font in fonts:
            for digit in range(10):
                for k in range(args.per_font):
                    files.append(write_photo(font_ink(font, digit), rng, Path(tmp) / f"b_{font.stem}_{digit}_{k}"))
                    labels.append(digit)
        sets["(b) printed, installed fonts"] = (files, torch.tensor(labels))
        generated = time.perf_counter() - start
        rows = [
            (
                "clean MNIST test (10k)",
                "-",
                {m: accuracy(model, test_images, test_labels) for m, model in models.items()},
            )
        ]
        timings = {}
        for name, (files, labels) in sets.items():
            for label, function in (("main", preprocess_digit_main), ("digits.py", preprocess_digit)):
                start = time.perf_counter()
                images = prepare(files, function)
                timings[label] = timings.get(label, 0.0) + time.perf_counter() - start
                rows.append(
                    (
                        f"{name} ({len(files)})",
                        label,
                        {m: accuracy(model, images, labels) for m, model in models.items()},
                    )
                )
    print(
        f"{len(fonts)} fonts; generation {generated:.0f} s; preprocessing "
        + ", ".join(f"{k} {1000 * v / sum(len(s[0]) for s in sets.values()):.1f} ms/image" for k, v in timings.items())
    )
    print("| set | preprocessing | " + " | ".join(models) + " |")
    print("|---|---|" + "---:|" * len(models))
    for name, label, acc in rows:
        print(f"| {name} | {label} | " + " | ".join(f"{acc[m]:.2f} %" for m in models) + " |")


if __name__ == "__main__":
    main()
