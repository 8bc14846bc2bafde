"""datamodules.digits.preprocess_digit: clean MNIST-style images stay as they were; photos of paper digits
(grey/tinted paper, uneven light, noise, JPEG, coloured ink, fine pens and markers, specks, page edges, any
size and place) become the MNIST digit they show."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from benchmarks.digits_in_the_wild import mnist_ink, photograph, preprocess_digit_main
from datamodules.digits import deskew, preprocess_digit, stroke_width
from datamodules.mnist_sources import load_bundled


@pytest.fixture(scope="module")
def mnist():
    _, _, images, labels = load_bundled()
    return images[:200], labels[:200]


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def open_photo(data: tuple[bytes, str]) -> Image.Image:
    return Image.open(io.BytesIO(data[0]))


def test_clean_mnist_digits_come_back_as_they_were(mnist):
    images, _ = mnist
    for polarity in ("white on black", "black on white"):
        scores = [
            similarity(
                preprocess_digit(Image.fromarray(x.numpy() if polarity == "white on black" else 255 - x.numpy())), x
            )
            for x in images
        ]
        assert np.median(scores) > 0.999 and np.mean(np.array(scores) > 0.97) > 0.9, polarity


def test_photographed_digits_look_like_the_mnist_digit(mnist):
    """Benchmark set (a): the new preprocessing recovers the digit; main's did not (the page counted as ink)."""
    images, _ = mnist
    rng = np.random.default_rng(0)
    new, old = [], []
    for x in images[:16]:
        photo = open_photo(photograph(mnist_ink(x.numpy()), rng))
        new.append(similarity(preprocess_digit(photo), x))
        old.append(similarity(preprocess_digit_main(photo), x))
    assert np.median(new) > 0.8 and min(new) > 0.4
    assert np.median(new) > np.median(old) + 0.25


def paper_photo(
    ink: np.ndarray, size=(900, 700), at=(400, 200), colour=(30, 50, 150), paper=(205, 190, 160)
) -> Image.Image:
    """`ink` (float [0, 1]) in `colour` on tinted paper lit from the left, with a dark page edge, specks and noise."""
    rng = np.random.default_rng(1)
    height, width = size[1], size[0]
    alpha = np.zeros((height, width), np.float32)
    alpha[at[1] : at[1] + ink.shape[0], at[0] : at[0] + ink.shape[1]] = ink
    image = np.array(paper, np.float32) * (1 - alpha[..., None]) + np.array(colour, np.float32) * alpha[..., None]
    image *= np.linspace(0.5, 1.0, width, dtype=np.float32)[None, :, None]  # light falls off to the left
    image[:, :40] = 25  # the table beside the page
    for y, x in rng.integers(60, min(height, width) - 60, (12, 2)):  # specks of dust
        image[y : y + 3, x : x + 3] = 60
    image += rng.normal(0, 6, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=60)
    return Image.open(buffer)


def big_ink(x: torch.Tensor, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(x.numpy()).resize((side, side), Image.BICUBIC), np.float32) / 255


def test_blue_ink_on_tinted_unevenly_lit_paper_with_specks_and_a_page_edge(mnist):
    images, _ = mnist
    for x in images[:5]:
        assert similarity(preprocess_digit(paper_photo(big_ink(x, 300))), x) > 0.85


def test_fine_pens_and_markers_are_brought_to_mnist_stroke_width():
    """A 7 drawn with a 3 px pen, a 20 px pen and a 70 px marker (on 500 px): all come out with MNIST's stroke."""
    import cv2

    digits = {}
    for pen in (3, 20, 70):
        ink = np.zeros((500, 400), np.uint8)
        cv2.polylines(ink, [np.array([[80, 70], [320, 70], [230, 270], [170, 440]], np.int32)], False, 255, pen)
        digits[pen] = preprocess_digit(
            paper_photo(
                ink.astype(np.float32) / 255, size=(700, 650), at=(150, 80), colour=(20, 20, 20), paper=(240, 240, 240)
            )
        )
        width = stroke_width(digits[pen].numpy() > 127)
        assert 1.2 < width < 4.5, (pen, width)
    assert similarity(digits[3], digits[20]) > 0.8 and similarity(digits[70], digits[20]) > 0.8


@pytest.mark.parametrize("side", [28, 60, 4000])
def test_any_size_and_position(mnist, side):
    images, _ = mnist
    x = images[0]
    canvas = Image.new("L", (side, side), 235)
    digit = Image.fromarray(255 - x.numpy()).resize((max(28, side // 4),) * 2, Image.BICUBIC)
    canvas.paste(digit, (side - digit.width - side // 20, side // 20))  # near the top-right corner
    out = preprocess_digit(canvas)
    assert out.shape == (28, 28) and out.dtype == torch.uint8
    assert similarity(out, x) > 0.9
    ys, xs = torch.nonzero(out, as_tuple=True)
    weights = out[ys, xs].float()
    assert (
        abs(float((ys * weights).sum() / weights.sum()) - 14) < 1
        and abs(float((xs * weights).sum() / weights.sum()) - 14) < 1
    )


def test_blank_paper_is_an_error_not_a_digit():
    noisy = np.random.default_rng(0).normal(200, 8, (300, 400)) * np.linspace(0.85, 1, 400)[None, :]
    for image in (
        Image.new("L", (50, 50), 255),
        Image.new("RGB", (64, 64), "black"),
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)),
    ):
        with pytest.raises(ValueError, match="The image is blank"):
            preprocess_digit(image)


def test_deskew_stands_a_slanted_stroke_upright():
    import cv2

    image = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(image).line([(35, 90), (65, 10)], fill=255, width=8)  # a "1" slanted to the right
    slanted = np.asarray(image, np.float32)
    straight = deskew(slanted)
    before, after = cv2.moments(slanted), cv2.moments(straight)
    assert abs(before["mu11"] / before["mu02"]) > 0.3 and abs(after["mu11"] / after["mu02"]) < 0.05
    assert preprocess_digit(image, deskew_digit=True).shape == (28, 28)
