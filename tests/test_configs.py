"""Configs a reader can follow (issue 18, item 5): what every run shares is written once, as the CLI's defaults
(apps/cli.py: seed 42, one device on the best accelerator, last.ckpt refreshed every 10 minutes, Lightning's own
trainer defaults), so a task config holds only what is particular to it; `--print_config` still shows it all."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from apps.cli import main
from paradis.yaml_files import read_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("configs/*.yaml"))


def resolved(config: Path) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit), pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["paradis"])
        main(["fit", "--config", str(config), "--print_config"])
    return yaml.safe_load(out.getvalue())


def shared_defaults() -> dict:
    """The CLI's defaults for what every config used to repeat (apps/cli.py)."""
    return {
        "seed_everything": 42,
        "trainer.accelerator": "auto",
        "trainer.devices": 1,
        "checkpoint.every_n_minutes": 10.0,
        "checkpoint.every_n_steps": 0,
    }


def get(config: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_config_repeats_a_shared_default(path):
    config = read_yaml(path)
    repeated = [key for key, value in shared_defaults().items() if get(config, key) == value]
    assert not repeated, f"{path.name} repeats the CLI's defaults {repeated}: delete them from the config"


def test_print_config_shows_the_shared_defaults():
    full = resolved(ROOT / "configs" / "mnist.yaml")
    for key, value in shared_defaults().items():
        assert get(full, key) == value, key
    assert get(full, "trainer.max_epochs") == 5  # and the config's own values


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name.startswith("ddpm")], ids=lambda p: p.name)
def test_ddpm_grids_and_fid_sample_like_the_model(path):
    """A DDPM config's sample grids and FID draw with the model's sampler and step count (the callbacks' default,
    None, means the module's): written once, so `--model.sample_steps N` reaches every sample the run draws."""
    import inspect

    from callbacks.fid import FID
    from callbacks.sample_grid import SampleGrid

    for callback in (SampleGrid, FID):
        parameters = inspect.signature(callback).parameters
        assert parameters["steps"].default is None and parameters["sampler"].default is None, callback.__name__
    for callback in read_yaml(path)["trainer"]["callbacks"]:
        if callback["class_path"].endswith((".SampleGrid", ".FID")):
            restated = {"steps", "sampler"} & set(callback.get("init_args", {}))
            assert not restated, f"{path.name}: {callback['class_path']} restates the model's {sorted(restated)}"
