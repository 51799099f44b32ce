# The two commands in the README: `make demo` and `make test`. Both set up .venv first, with the
# versions pinned in requirements.lock (a pip constraints file: every package, direct or not, at the
# version the project was tested with; `make lock` writes it from a full dev environment).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock

.PHONY: demo test test-fast lint setup setup-dev dev lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("semtel needs Python 3.11 or 3.12, found " + sys.version.split()[0]) if sys.version_info[:2] not in ((3, 11), (3, 12)) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The base install runs the demo (Polars, exact dedupe, GX gates, the simulator).
$(VENV)/.base: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .
	touch $@

# Everything the tests use: the extras, and llama-cpp-python for the real-model tests.
$(VENV)/.dev: pyproject.toml $(LOCK) scripts/install_real_llm.sh | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev]"
	LOCK=$(LOCK) scripts/install_real_llm.sh
	touch $@ $(VENV)/.base

setup: $(VENV)/.base

setup-dev: $(VENV)/.dev

demo: setup
	$(BIN)/semtel demo $(ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy semtel_dagster

# Everything: lint, unit, integration, Spark, fault, real-model and browser tests.
test: lint
	$(BIN)/python -m pytest -q $(ARGS)

# The unit tests only (pure logic and single components over loopback HTTP, no model loaded), a worker
# per core: most of their time is spent waiting on timeouts, hedges and quota windows over loopback.
test-fast: setup-dev
	$(BIN)/python -m pytest -q -n auto -m unit tests/unit $(ARGS)

# The UI on the demo's instance (run monitoring on); runs from the UI use SEMTEL_ENDPOINTS, else the simulator.
dev: setup
	$(BIN)/python -c 'from pathlib import Path; from semtel_dagster.cli.demo import ensure_instance; ensure_instance(Path(".semtel/dagster"))'
	DAGSTER_HOME=$(CURDIR)/.semtel/dagster SEMTEL_ENDPOINTS=$${SEMTEL_ENDPOINTS:-sim} $(BIN)/dagster dev -w workspace.yaml

# Rewrite requirements.lock from this environment (after `pip install -e ".[dev,real-llm,bench]"`).
lock:
	$(BIN)/python -m pip freeze --exclude-editable \
	  | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_]+-([0-9][^-]*)-.*$$/\1==\2/; s/\+cpu$$//' > $(LOCK)

clean:
	rm -rf .semtel
