# Every target bootstraps its own virtual environment (.venv) from pyproject.toml, so a fresh
# machine with Python 3.11+ and pip needs nothing else: no database, no Redis, no API key.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.triplegain/dagster

.PHONY: demo lint test bench ui install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		($(PYTHON) -m pip install --user --quiet virtualenv && $(PYTHON) -m virtualenv $(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/triplegain demo

# The house rules: style, types, and which package may import which. Each step fails the build.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pytest tests/benchmarks -o addopts="" -q -s -p no:randomly

ui: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true
	$(BIN)/dagster dev -w workspace.yaml

clean:
	-$(BIN)/triplegain db stop
	rm -rf .triplegain
