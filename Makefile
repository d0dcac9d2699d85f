# l1000_assets: the two commands a user needs are `make demo` and `make test`.
# Everything else is a helper they call. Requires only Python 3.11 on PATH.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data
export DAGSTER_HOME := $(CURDIR)/dagster_home
export L1000_DATA_ROOT ?= $(CURDIR)/$(DATA)

.PHONY: demo test test-all lint format install install-gpu ui chromium test-ui check bench clean-data

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: could not create $(VENV) (is the venv module installed?)"; exit 1; }

# TensorFlow build: cpu by default; `make install-gpu` switches this venv to gpu for good.
TF_BUILD = $$(test -f $(VENV)/.gpu && echo gpu || echo cpu)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(TF_BUILD),dev]"
	@touch $(STAMP)

install: $(STAMP)

# CUDA TensorFlow instead of the CPU build (a GPU machine only; needs network for CUDA wheels).
install-gpu: $(BIN)/python
	touch $(VENV)/.gpu
	$(BIN)/python -m pip uninstall --yes tensorflow-cpu
	$(BIN)/python -m pip install -c constraints.txt -e ".[gpu,dev]"
	@touch $(STAMP)
	$(BIN)/python -c "import tensorflow as tf; print('GPUs:', tf.config.list_physical_devices('GPU'))"

demo: $(STAMP)
	$(BIN)/l1000 demo --data-root "$(L1000_DATA_ROOT)"

test: $(STAMP) lint
	$(BIN)/python -m pytest

# ruff: lint and format check (configured in pyproject.toml); `make format` rewrites.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole suite, slow tests included.
test-all: $(STAMP) lint
	$(BIN)/python -m pytest -m ""

check: $(STAMP)
	$(BIN)/dg check defs

# The Dagster UI and its daemon (sensors, schedule, automation, run queue) on 127.0.0.1 only,
# with run history in dagster_home/. L1000_AUTOMATION=off starts the sensors stopped.
ui: $(STAMP)
	@echo "Dagster UI: http://127.0.0.1:$${PORT:-3000}  (DAGSTER_HOME=$(DAGSTER_HOME), data: $(L1000_DATA_ROOT))"
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev --host 127.0.0.1 --port $${PORT:-3000}

# Debian's chromium package, for the browser test (tests/test_ui_browser.py installs it too).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends chromium || \
	    { apt-get update && apt-get install -y --no-install-recommends chromium; }; \
	  else sudo apt-get install -y --no-install-recommends chromium; fi; }

# The UI in headless Chromium (screenshots in test-artifacts/).
test-ui: $(STAMP) chromium
	$(BIN)/python -m pytest tests/test_ui_browser.py -s

bench: $(STAMP)
	$(BIN)/python benchmarks/synth.py --profiles 200000

clean-data:
	rm -rf "$(L1000_DATA_ROOT)"
