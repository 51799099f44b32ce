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

dev: setup
	mkdir -p .semtel/dagster && touch .semtel/dagster/dagster.yaml
	SEMTEL_ENDPOINTS=$${SEMTEL_ENDPOINTS:-sim} DAGSTER_HOME=$(CURDIR)/.semtel/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .semtel
