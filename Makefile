# LIP: every target sets itself up from nothing and fails loudly on any error.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export LIP_HOME ?= $(CURDIR)/.lip

.PHONY: setup test lint demo bench validate clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LIP needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check lip_dagster lip_dagster_tests benchmarks

validate: setup
	DAGSTER_HOME=$$(mktemp -d) $(BIN)/dagster definitions validate -w workspace.yaml

test: setup lint validate
	$(BIN)/pytest -n 2 --dist loadfile

demo: setup
	$(BIN)/lip demo

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .lip .pytest_cache .ruff_cache
