# LIP: every target sets itself up from nothing and fails loudly on any error.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export LIP_HOME ?= $(CURDIR)/.lip

.PHONY: setup test lint demo bench soak validate postgres clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LIP needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check lip_dagster lip_dagster_tests benchmarks scripts
	$(BIN)/ruff format --check lip_dagster lip_dagster_tests benchmarks scripts

validate: setup
	DAGSTER_HOME=$$(mktemp -d) $(BIN)/dagster definitions validate -w workspace.yaml

# The PostgreSQL-backed tests start their own throwaway server from Debian's package.
postgres:
	bash scripts/ensure-postgres.sh

test: setup lint validate postgres
	$(BIN)/pytest -n 2 --dist loadfile

demo: setup
	$(BIN)/lip demo

bench: setup
	$(BIN)/python -m benchmarks.run

# Not part of CI: every demo source at a sustained rate, then a reconciliation.
SOAK_MINUTES ?= 30
SOAK_RATE ?= 60
soak: setup
	$(BIN)/python scripts/soak.py --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

clean:
	rm -rf $(VENV) .lip .pytest_cache .ruff_cache
