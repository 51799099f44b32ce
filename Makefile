# The two commands in the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test setup dev clean

$(BIN)/semtel: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("semtel needs Python 3.11 or 3.12, found " + sys.version.split()[0]) if sys.version_info[:2] not in ((3, 11), (3, 12)) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/semtel

setup: $(BIN)/semtel

demo: setup
	$(BIN)/semtel demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

# The UI on the demo's instance (run monitoring on); runs from the UI use SEMTEL_ENDPOINTS, else the simulator.
dev: setup
	$(BIN)/python -c 'from pathlib import Path; from semtel_dagster.cli.demo import ensure_instance; ensure_instance(Path(".semtel/dagster"))'
	DAGSTER_HOME=$(CURDIR)/.semtel/dagster SEMTEL_ENDPOINTS=$${SEMTEL_ENDPOINTS:-sim} $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .semtel
