"""Cat faces: find the cat's face in each photo of a folder and crop a square around it
(`ImageFolderDataModule(crop="cat_face")`, issue 33).

Detector: OpenCV's two frontal cat-face Haar cascades, `haarcascade_frontalcatface.xml` and
`haarcascade_frontalcatface_extended.xml` (shipped in `cv2.data.haarcascades` by opencv-python-headless 4.x; 5.x
has neither the class nor the files, hence the `<5` pin), run with `scaleFactor=1.05, minNeighbors=3,
minSize=(32, 32)` on the greyscale photo at a shorter side of at most 128 px (`DETECT_SIZE`: larger photos are
searched at that size, their boxes scaled back). The boxes of both cascades are pooled and the largest is the
face. Measured on the 2,967 photos of ../shared/data/cats128 (128 px): 1,277 have a face (each cascade alone
finds ~1,170-1,210; they agree with IoU > 0.5 on ~1,070); false positives run a few per hundred by eye; the
median box is 54 px; ~20 ms per photo per cascade on one core.

Crop: the cascade was trained on boxes as wide as the base of the ears, so its box is tight: the crop is the
square of `MARGIN` (1.5) times the box's side around the box's centre, which keeps the ears. The square is kept
square: moved inside the photo where it would cross an edge, and shrunk to the photo's shorter side only when
the photo is smaller than it (`square_around`). At 32 px these crops look like AFHQ thumbnails.

Cache: detection runs once per folder (in the data module's `prepare_data`); its result, the square of every
photo that has a face, is a small JSON file in `cache_dir` named by a hash of the folder's files (relative
path, size, mtime), the settings above and OpenCV's version. Any change to the folder or the settings gives a
new key, so a stale result is never read. The default place is the user's cache (`$XDG_CACHE_HOME/paradis/
cat_faces`, else `~/.cache/paradis/cat_faces`), not the photo folder (which may be read-only) nor the run
folder (a new run would detect again): every run and every rank of a DDP run on the machine reads it, and it
is safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

CASCADES = ("haarcascade_frontalcatface.xml", "haarcascade_frontalcatface_extended.xml")
SCALE_FACTOR, MIN_NEIGHBORS, MIN_SIZE = 1.05, 3, 32
DETECT_SIZE = 128  # photos are searched at this shorter side at most (the size the facts were measured at)
MARGIN = 1.5  # the crop's side over the box's
Square = tuple[int, int, int]  # (left, top, side) in the EXIF-rotated photo's pixels


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/paradis/cat_faces`, else `~/.cache/paradis/cat_faces`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "paradis" / "cat_faces"


def cascades() -> list:
    """Both frontal cat-face cascades; one sentence naming the fix when this OpenCV lacks them (5.x)."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise ImportError(
            f"OpenCV {cv2.__version__} has no Haar cascades (5.x dropped them), which the cat-face crop needs; "
            'install 4.x: pip install "opencv-python-headless>=4.8,<5".'
        )
    return [cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name)) for name in CASCADES]


def largest_box(grey: np.ndarray, detectors: list) -> tuple[int, int, int, int] | None:
    """The largest (x, y, w, h) that either cascade finds in a uint8 greyscale image, or None."""
    boxes = [
        tuple(int(v) for v in box)
        for detector in detectors
        for box in detector.detectMultiScale(
            grey, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(MIN_SIZE, MIN_SIZE)
        )
    ]
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def square_around(box: tuple[int, int, int, int], width: int, height: int, margin: float = MARGIN) -> Square:
    """The square of `margin` x the box's larger side around its centre, moved inside a `width` x `height`
    image, and shrunk to the image's shorter side only when it does not fit: (left, top, side)."""
    x, y, w, h = box
    side = min(round(margin * max(w, h)), width, height)
    left = round(x + w / 2 - side / 2)
    top = round(y + h / 2 - side / 2)
    return min(max(left, 0), width - side), min(max(top, 0), height - side), side


def find_face(path: Path, detectors: list) -> Square | None:
    """The face square of one photo (EXIF-rotated, as it is read for training), or None. Raises OSError /
    ValueError for files that cannot be read as images, like `load_image`."""
    with Image.open(path) as image:
        grey = ImageOps.exif_transpose(image).convert("L")
    width, height = grey.size
    scale = max(1.0, min(width, height) / DETECT_SIZE)
    if scale > 1:
        grey = grey.resize((round(width / scale), round(height / scale)), Image.BILINEAR, reducing_gap=2.0)
    box = largest_box(np.asarray(grey), detectors)
    if box is None:
        return None
    return square_around(tuple(round(v * scale) for v in box), width, height)


def settings() -> dict:
    import cv2

    return {
        "cascades": list(CASCADES),
        "scale_factor": SCALE_FACTOR,
        "min_neighbors": MIN_NEIGHBORS,
        "min_size": MIN_SIZE,
        "detect_size": DETECT_SIZE,
        "margin": MARGIN,
        "opencv": cv2.__version__,
    }


def cache_key(folder: Path, files: list[Path]) -> str:
    """A hash of the files (relative path, size, mtime) and the detection and crop settings."""
    digest = hashlib.sha256(json.dumps(settings(), sort_keys=True).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class FaceIndex:
    """Which photos of a folder have a cat face, and its square: `squares` (relative path -> (left, top, side)),
    `n_photos` (readable photos searched), `unreadable` (relative paths of image files that could not be read)."""

    def __init__(self, folder: Path, squares: dict[str, Square], n_photos: int, unreadable: list[str]) -> None:
        self.folder, self.squares, self.n_photos, self.unreadable = folder, squares, n_photos, unreadable

    def files(self) -> list[Path]:
        return [self.folder / name for name in self.squares]

    def summary(self) -> str:
        return f"{len(self.squares):,} of {self.n_photos:,} photos have a cat face; the others are not used"


def cache_file(cache_dir: Path, folder: Path, files: list[Path]) -> Path:
    return Path(cache_dir) / f"faces_{cache_key(folder, files)}.json"


def read_cached(path: Path, folder: Path) -> FaceIndex | None:
    """The cached index, or None when there is none or it cannot be read (then detection runs again)."""
    try:
        data = json.loads(path.read_text())
        squares = {name: tuple(square) for name, square in data["squares"].items()}
        return FaceIndex(folder, squares, int(data["n_photos"]), list(data["unreadable"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def detect_folder(folder: Path, files: list[Path], log=print) -> FaceIndex:
    """Search every photo of `files` for a face (no cache); unreadable files are listed, not raised."""
    detectors = cascades()
    squares, unreadable, start = {}, [], time.perf_counter()
    log(f"Looking for cat faces in {len(files):,} photos of {folder} (once; about 40 ms a photo) ...")
    for path in files:
        try:
            square = find_face(path, detectors)
        except (OSError, ValueError, Image.DecompressionBombError):
            unreadable.append(str(path.relative_to(folder)))
            continue
        if square is not None:
            squares[str(path.relative_to(folder))] = square
    index = FaceIndex(folder, squares, len(files) - len(unreadable), unreadable)
    log(f"Searched {len(files):,} photos in {time.perf_counter() - start:.0f} s")
    return index


def no_face_error(folder: Path, n_photos: int) -> ValueError:
    return ValueError(
        f"No cat face was found in any of the {n_photos:,} readable photos of {folder}; use photos where a cat "
        "faces the camera, or train on whole photos with --data.crop center."
    )


def face_index(folder: Path, files: list[Path], cache_dir: Path, log=print) -> tuple[FaceIndex, bool]:
    """The folder's faces from the cache, else detected and cached: (index, True when read from the cache).
    A folder without any face raises one sentence and writes nothing."""
    path = cache_file(cache_dir, folder, files)
    index = read_cached(path, folder)
    cached = index is not None
    if index is None:
        index = detect_folder(folder, files, log)
    if not index.squares:
        raise no_face_error(folder, index.n_photos)
    if not cached:
        write_cache(path, index)
    return index, cached


def write_cache(path: Path, index: FaceIndex) -> None:
    """Atomically (a temporary file renamed), so a rank or another run never reads half a file; a cache folder
    that cannot be written only costs detection next time."""
    data = {"folder": str(index.folder), "settings": settings(), "n_photos": index.n_photos}
    data.update(unreadable=index.unreadable, squares={name: list(sq) for name, sq in index.squares.items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(data))
        os.replace(partial, path)
    except OSError:
        pass


def contact_sheet(images: torch.Tensor, path: Path, thumb: int = 32, nrow: int = 32) -> Path:
    """The crops (uint8 `[N, C, H, W]`) as one PNG of `thumb`-px tiles, `nrow` to a row."""
    from torchvision.utils import make_grid

    if images.shape[-1] != thumb:
        images = torch.nn.functional.interpolate(images.float(), size=thumb, mode="bilinear", antialias=True)
    grid = make_grid(images.float() / 255, nrow=min(nrow, len(images)), padding=2, pad_value=1.0)
    array = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)
    return path
