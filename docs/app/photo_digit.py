"""The README figure: photos of paper digits, the 28x28 the model saw, and its prediction (before and after).

    python docs/app/photo_digit.py CHECKPOINT [docs/app/photo_digit.png]

The photos are synthetic: bundled MNIST test digits photographed on paper by the camera of
benchmarks/digits_in_the_wild.py (set a), so nothing outside the repository is needed.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.app.models import load_module  # noqa: E402
from benchmarks.digits_in_the_wild import mnist_ink, photograph, preprocess_digit_main  # noqa: E402
from datamodules.digits import preprocess_digit  # noqa: E402
from datamodules.mnist_sources import load_bundled  # noqa: E402

INDICES = (0, 11, 61, 84)  # test digits 7, 6, 8, 8


def main() -> None:
    checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "docs/app/photo_digit.png")
    model = load_module(checkpoint, "mnist")
    _, _, images, labels = load_bundled()
    rng = np.random.default_rng(3)
    figure, axes = plt.subplots(3, len(INDICES), figsize=(2.3 * len(INDICES), 7.2))
    for column, index in enumerate(INDICES):
        photo = Image.open(io.BytesIO(photograph(mnist_ink(images[index].numpy()), rng)[0]))
        axes[0, column].imshow(photo)
        axes[0, column].set_title(f"photo {photo.width}x{photo.height}", fontsize=9)
        for row, (name, function) in enumerate((("now", preprocess_digit), ("before", preprocess_digit_main)), start=1):
            digit = function(photo)
            with torch.inference_mode():
                p = model(digit[None]).softmax(-1)[0]
            axes[row, column].imshow(digit.numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ok = "right" if int(p.argmax()) == int(labels[index]) else "wrong"
            axes[row, column].set_title(f"{name}: {int(p.argmax())} ({100 * float(p.max()):.0f} %, {ok})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].set_ylabel("the 28x28 the model saw", fontsize=9)
    axes[2, 0].set_ylabel("main's preprocessing", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
