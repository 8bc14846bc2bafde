# The commands a user types. `make install` is idempotent: a second call only
# checks a stamp file that is newer than pyproject.toml.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.paradis-installed
# Data that PyPI packages ship, used offline: pinned by version and wheel SHA-256 in requirements-data.txt.

# Offline by default for tests: nothing may reach a model hub or analytics.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install install-browser demo test test-quick bench clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml Makefile requirements-data.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test,postgres]" 2>&1 | sed '/is ignored/d'
	$(BIN)/pip install -q --no-deps --require-hashes --only-binary :all: -r requirements-data.txt 2>&1 | sed '/is ignored/d'
	$(BIN)/python -c "import torch, torchvision, lightning, diffusers, transformers, peft; print('installed: torch', torch.__version__, 'lightning', lightning.__version__)"
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=0 $(BIN)/paradis fit --config configs/mnist.yaml

# Debian's Chromium for the browser tests (root, or run it with sudo); `.ci/run` calls it. Tests never install.
install-browser:
	command -v chromium > /dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The whole suite on two pytest-xdist workers, a test file per worker at a time (a file's module fixtures are
# built once), one intra-op thread each: 934 s against 1,438 s for one process on a fresh clone of this 2-core
# machine (BENCHMARKS.md "Test suite").
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile tests

# The edit loop (< 1 min): units, configs, the code's shape, the error sentences.
QUICK := tests/test_layers.py tests/test_surface.py tests/test_configs.py tests/test_errors.py tests/test_bundled.py
test-quick: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 $(QUICK)

# The figures in BENCHMARKS.md (each script's docstring has its options). ~30 min on 2 CPU cores.
bench: install
	$(BIN)/python benchmarks/mnist_epoch.py
	$(BIN)/python benchmarks/ddpm.py train --unet tiny
	$(BIN)/python benchmarks/ddpm.py sample
	$(BIN)/python benchmarks/text.py

# The prepared GPU check (benchmarks/gpu_check.py, ~8 min on one GPU): figures + GPU name to $(OUT)/gpu_check.md/.json.
OUT ?= gpu_check
PHOTOS ?=
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(OUT) $(if $(PHOTOS),--photos $(PHOTOS))

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
