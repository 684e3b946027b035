# cnnx: `make demo` trains the default model on the embedded digits; `make test` runs the checks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= workdirs/demo
PYTEST_ARGS ?=
# Test processes (pytest-xdist). XLA compiles one program per thread, so two workers keep both
# cores of a small CI machine busy; each worker holds jax + tf + torch (~3 GB).
TEST_WORKERS ?= 2

.PHONY: demo test lint format install install-dev clean device-wheels

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The optional oneDNN extension (cnnx/backends/cpu/onednn.py): compiled when oneDNN's packages and
# a C++ compiler are there; otherwise convolutions stay with XLA and this says why.
$(VENV)/.onednn: cnnx/backends/cpu/onednn_conv.cc $(VENV)/.installed
	$(PY) -m cnnx.backends.cpu.onednn build || echo "continuing without the oneDNN extension"
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed $(VENV)/.onednn
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed $(VENV)/.onednn
install-dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed $(VENV)/.onednn
	rm -rf $(DEMO_DIR)
	$(PY) train.py --config=configs/default.py --workdir=$(DEMO_DIR)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/shellcheck -x scripts/*.sh scripts/tpu/*.sh

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The wheels scripts/device_check.py needs on a bare GPU machine (Python 3.12, JAX, flax, optax,
# orbax, no internet) that lacks them, at requirements.txt's versions, into $(DEVICE_WHEELS).
DEVICE_WHEELS ?= .whl
DEVICE_PACKAGES := $(shell grep -E '^(ml-collections|clu)==' requirements.txt | cut -d' ' -f1)
device-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux2014_x86_64 -d $(DEVICE_WHEELS) $(DEVICE_PACKAGES)
	ls $(DEVICE_WHEELS)

clean:
	rm -rf $(VENV) workdirs .pytest_cache .ruff_cache
