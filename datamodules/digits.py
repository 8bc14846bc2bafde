"""A photo (or scan, or drawing) of one digit -> the 28x28 image an MNIST model expects.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept) and placed in a
28x28 frame with their centre of mass at the centre. Real images are not: paper is grey or
tinted, lit unevenly, photographed with noise and saved as JPEG; the digit may be small and
anywhere in the frame, drawn with a fine pen or a marker, in blue or red ink. The steps:

1. polarity: most pixels are background; if they are dark (a white-on-black MNIST-style
   image), the image is inverted so ink is always dark on light;
2. background: the paper's colour and illumination are estimated per channel with a
   morphological closing (which removes the strokes) on a reduced copy, and divided out
   (a photo is illumination x reflectance): shadows, gradients and tints go;
3. ink: the darkest channel's contrast against the paper (coloured ink counts), thresholded
   with Otsu on a lightly blurred copy (noise, JPEG artefacts);
4. the digit's connected components: the largest one away from the frame's edge, and the
   pieces near it (a 5's bar, a broken stroke); specks and page edges are dropped;
5. stroke width: measured (2 x area / perimeter) and brought into MNIST's range by a grey
   dilation or erosion, so fine pens and markers both look like MNIST's pen;
6. optional moment-based deskew (off by default: the models were trained on MNIST as is);
7. fit into 20x20 and centre by mass in 28x28.

OpenCV (headless) does the image work: resizing, morphology, Otsu, connected components,
contours, moments and the affine warp.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

WORKING_SIDE = 1024  # larger photos are reduced to this longer side first (a digit keeps >= ~15 px)
BACKGROUND_SIDE = 96  # the paper is estimated on a copy this large: illumination is smooth
STROKE = 0.118  # MNIST's stroke width / the digit's longer side (median over the test set: 2.4 px in 20)


def to_ink(image: Image.Image) -> np.ndarray:
    """Ink strength in [0, 1] (float32, H x W): 1 - pixel / paper, the darkest channel, paper divided out."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        paper = Image.new("RGBA", image.size, "white")  # transparent = paper
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    scale = WORKING_SIDE / max(pixels.shape[:2])
    if scale < 1:
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = pixels.shape[:2]
    small_scale = min(1.0, BACKGROUND_SIDE / max(height, width))
    small = cv2.resize(pixels, None, fx=small_scale, fy=small_scale, interpolation=cv2.INTER_AREA)
    size = max(3, int(0.3 * max(small.shape[:2])) | 1)
    if light_ink(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), size):  # white on black (MNIST style): invert
        pixels, small = 255 - pixels, 255 - small
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    paper = cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    ink = cv2.divide(paper - pixels.astype(np.float32), np.maximum(paper, 32.0))  # black "paper" holds no dark ink
    red, green, blue = cv2.split(ink)
    return cv2.max(cv2.max(red, green), blue).clip(
        0.0, 1.0
    )  # the strongest channel (numpy's max(axis=2) is 10x slower)


def light_ink(gray: np.ndarray, size: int) -> bool:
    """Whether the ink is lighter than the background: against a median-filtered copy (which ignores thin ink of
    either polarity and follows the light), which side has more pixels beyond the noise?"""
    residual = gray.astype(np.float32) - cv2.medianBlur(gray, size).astype(np.float32)
    noise = 3 * 1.4826 * float(np.median(np.abs(residual))) + 2
    return float(np.clip(residual - noise, 0, None).sum()) > float(np.clip(-residual - noise, 0, None).sum())


def digit_mask(ink: np.ndarray) -> np.ndarray:
    """The digit's pixels (bool): Otsu on a blurred copy, then its connected components (specks and edges go)."""
    height, width = ink.shape
    sigma = min(height, width) / 250
    smooth = cv2.GaussianBlur(ink, (0, 0), sigma) if sigma >= 0.5 else ink
    peak = float(smooth.max())
    if peak < 0.12:
        raise ValueError("The image is blank: it holds no digit to classify; draw or upload a digit.")
    levels = (smooth / peak * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary = (levels > max(otsu, 0.25 * 255)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    x, y, w, h, area = (stats[1:, i] for i in range(5))
    edge = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    inner = np.where(~edge & (area >= 0.05 * area.max()) & (area >= 16))[0]  # a page edge loses to the digit
    main = inner[np.argmax(area[inner])] if len(inner) else int(np.argmax(area))
    keep = {main}
    box = [x[main], y[main], x[main] + w[main], y[main] + h[main]]
    grown = True
    while grown:  # pieces near the digit (a 5's bar, a broken stroke) join it; far or tiny ones do not
        grown = False
        gap = 0.3 * max(box[2] - box[0], box[3] - box[1])
        for i in range(count - 1):
            if i in keep or area[i] < 0.03 * area[main] or (edge[i] and not edge[main]):
                continue
            if (
                x[i] <= box[2] + gap
                and x[i] + w[i] >= box[0] - gap
                and y[i] <= box[3] + gap
                and y[i] + h[i] >= box[1] - gap
            ):
                keep.add(i)
                box = [min(box[0], x[i]), min(box[1], y[i]), max(box[2], x[i] + w[i]), max(box[3], y[i] + h[i])]
                grown = True
    return np.isin(labels, [i + 1 for i in keep])


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 x area / perimeter (a stroke of length L and width w: w L / L)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, closed=True) for c in contours)
    return 2.0 * float(mask.sum()) / max(perimeter, 1.0)


def deskew(digit: np.ndarray) -> np.ndarray:
    """Shear the digit upright by its second moments (the deskewing of LeCun et al.'s MNIST experiments)."""
    moments = cv2.moments(digit)
    if abs(moments["mu02"]) < 1e-2:
        return digit
    skew = moments["mu11"] / moments["mu02"]
    cy = moments["m01"] / moments["m00"]
    shear = np.float32([[1, skew, -skew * cy], [0, 1, 0]])  # source x = x + skew (y - cy)
    pad = int(abs(skew) * digit.shape[0]) + 1  # room for the sheared rows
    digit = cv2.copyMakeBorder(digit, 0, 0, pad, pad, cv2.BORDER_CONSTANT, value=0)
    return cv2.warpAffine(digit, shear, (digit.shape[1], digit.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def center_by_mass(digit: np.ndarray) -> torch.Tensor:
    """A digit already fitted into 20x20 (float, 0..255) -> uint8 [28, 28] with its centre of mass at the centre."""
    canvas = np.zeros((28, 28), dtype=np.float32)
    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    cy, cx = (
        ((ys * digit).sum() / total, (xs * digit).sum() / total)
        if total > 0
        else (digit.shape[0] / 2, digit.shape[1] / 2)
    )
    top = min(max(int(round(14 - cy)), 0), 28 - digit.shape[0])
    left = min(max(int(round(14 - cx)), 0), 28 - digit.shape[1])
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return torch.from_numpy(canvas.clip(0, 255).round().astype(np.uint8))


def fit_20(crop: np.ndarray) -> np.ndarray:
    """Resize (aspect kept, Lanczos as before) so the longer side is 20 px; float 0..255."""
    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float32)


def preprocess_digit(image: Image.Image, deskew_digit: bool = False) -> torch.Tensor:
    """Any image of one digit (photo, scan, drawing; either polarity) -> uint8 [28, 28], white on black, as MNIST."""
    ink = to_ink(image)
    mask = digit_mask(ink)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # keep anti-aliased edges
    core = float(np.percentile(ink[mask], 90))
    floor = float(np.median(ink[~near][::7])) if (~near).any() else 0.0  # every 7th paper pixel is plenty
    digit = np.where(near, ((ink - floor) / max(core - floor, 1e-3)).clip(0, 1), 0.0).astype(np.float32)
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(bottom - top, right - left)
    pad = max(2, side // 4)
    digit = np.pad(digit, pad)[top : bottom + 2 * pad, left : right + 2 * pad]
    width = stroke_width(mask) * 20.0 / side  # the stroke as it will be in the 20x20 box
    if not 0.5 * STROKE * 20 <= width <= 1.8 * STROKE * 20:  # MNIST's own 1-99 % range is left alone
        pixels = int(round(abs(STROKE * 20 - width) * side / 20.0))
        if pixels >= 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (pixels + 1, pixels + 1))
            digit = (cv2.dilate if width < STROKE * 20 else cv2.erode)(digit, kernel)
    if deskew_digit:
        digit = deskew(digit)
    rows, cols = np.nonzero(digit > 0.05)
    if len(rows) == 0:
        raise ValueError("The image is blank: it holds no digit to classify; draw or upload a digit.")
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] * 255.0
    return center_by_mass(fit_20(crop))
