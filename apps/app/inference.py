"""What each tab computes, with the same preprocessing and grid layout as `paradis predict`."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path

import torch
from PIL import Image

from datamodules.digits import preprocess_digit  # exactly what `paradis predict` does with an image file
from paradis.images import image_grid

MAX_IMAGES = 64  # DDPM grid
MAX_PIXELS = 4096 * 4096  # uploads
MAX_TEXTS, MAX_CHARS = 64, 100_000
OUTPUTS = Path(tempfile.gettempdir()) / "paradis-app"  # images the app answers with (gradio copies them to its cache)
SHOWN_SIDE = 512  # small images are shown at least this large (nearest neighbour: every pixel stays visible)


def enlarge(image: Image.Image, side: int = SHOWN_SIDE) -> Image.Image:
    """Nearest-neighbour upscaling by a whole factor, so the longer side reaches at least `side`."""
    factor = max(1, -(-side // max(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def png_file(image: Image.Image, name: str) -> str:
    """`image` saved as `<name>-<content hash>.png` in the app's temp folder (written once, atomically): gradio
    rewrites an image it saves itself on every request, so concurrent downloads of the same answer could read a
    half-written file; a path it only copies, once."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    path = OUTPUTS / f"{name}-{hashlib.sha1(data).hexdigest()[:16]}.png"
    if not path.exists():
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        staging.write_bytes(data)
        os.replace(staging, path)
    return str(path)


def open_image(path: str | None) -> Image.Image:
    if not path:
        raise ValueError("No image: upload a PNG or JPEG of a digit.")
    try:
        image = Image.open(path)
        width, height = image.size
    except (OSError, Image.DecompressionBombError, Image.UnidentifiedImageError):
        raise ValueError(f"{Path(path).name} is not a readable image; upload a PNG or JPEG of a digit.") from None
    if width * height > MAX_PIXELS:
        raise ValueError(f"The image is {width}x{height} pixels, too large to classify; upload one under 4096x4096.")
    image.load()
    return image


def sketch_image(sketch: dict | None) -> Image.Image:
    """The sketchpad's composite, flattened onto white paper (the strokes are dark ink)."""
    composite = (sketch or {}).get("composite")
    if composite is None:
        raise ValueError("The sketch is empty; draw a digit first.")
    image = composite if isinstance(composite, Image.Image) else open_image(composite)
    if image.width * image.height > MAX_PIXELS:
        raise ValueError(f"The sketch is {image.width}x{image.height} pixels, too large to classify; draw on the pad.")
    if image.mode in ("RGBA", "LA", "P"):
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA")).convert("RGB")
    return image


def classify_digit(models, path: str | None, image: Image.Image) -> tuple[dict[str, float], str]:
    """({class: probability}, a PNG of the 28x28 input the model saw, enlarged 8x)."""
    digit = preprocess_digit(image)
    model, lock = models.get(path, "mnist")
    with lock, torch.inference_mode():
        probabilities = model.classify(digit[None])[0]
    seen = png_file(enlarge(Image.fromarray(digit.numpy()), 224), "seen")
    return {name: float(p) for name, p in zip(model.class_names, probabilities)}, seen


def generate(models, path: str | None, n, seed, sampler: str, steps, progress=None) -> tuple[str, str]:
    """(a PNG of the grid enlarged for the page, a PNG of the grid exactly as `paradis predict` writes it)."""
    n, steps = int(n or 0), int(steps or 0)
    if not 1 <= n <= MAX_IMAGES:
        raise ValueError(
            f"Ask for between 1 and {MAX_IMAGES} images (got {n}); larger grids take too long on this machine."
        )
    model, lock = models.get(path, "ddpm")
    limit = model.hparams.num_train_timesteps
    if not 1 <= steps <= limit:
        raise ValueError(f"Steps must be between 1 and {limit} (the model's training timesteps), got {steps}.")
    sampler = str(sampler).lower()
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"Sampler must be DDIM or DDPM, got {sampler!r}.")
    generator = torch.Generator().manual_seed(int(seed or 0))
    report = (lambda i, total: progress((i, total), desc="Sampling", unit="steps")) if progress is not None else None
    with lock, torch.inference_mode():
        images = model.sample(n, steps=steps, sampler=sampler, generator=generator, progress=report)
    # The grid `paradis predict` writes, converted to 8 bits as save_image does.
    grid = image_grid(images.cpu())
    grid = Image.fromarray(grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy())
    return png_file(enlarge(grid), "grid-enlarged"), png_file(grid, f"ddpm_{n}_seed{int(seed or 0)}_{sampler}{steps}")


def classify_texts(models, path: str | None, text: str | None, per_line: bool):
    text = (text or "").strip()
    if not text:
        raise ValueError("The text is empty; type or paste some text to classify.")
    if len(text) > MAX_CHARS:
        raise ValueError(f"The text has {len(text):,} characters; paste at most {MAX_CHARS:,} at once.")
    texts = [line.strip() for line in text.splitlines() if line.strip()] if per_line else [text]
    if len(texts) > MAX_TEXTS:
        raise ValueError(f"{len(texts)} lines at once is too many; classify at most {MAX_TEXTS} lines per request.")
    import pandas as pd

    model, lock = models.get(path, "text")
    with lock, torch.inference_mode():
        probabilities, truncated = model.classify(texts)
    names = model.class_names
    rows = [
        [t, names[int(p.argmax())], *[round(float(x), 4) for x in p], "yes" if cut else ""]
        for t, p, cut in zip(texts, probabilities, truncated)
    ]
    table = pd.DataFrame(rows, columns=["text", "label", *[f"p_{n}" for n in names], "truncated"])
    cut = [str(i + 1) for i, c in enumerate(truncated) if c]
    note = (
        (
            f"Truncated: text {', '.join(cut)} is longer than the model's max length ({model.max_length} tokens); "
            f"only its first {model.max_length} tokens were classified."
        )
        if cut
        else ""
    )
    return {n: float(p) for n, p in zip(names, probabilities[0])}, table, note
