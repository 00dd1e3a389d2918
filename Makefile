# Two commands a newcomer needs: `make run` (install + the default workflow) and `make test`.
VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
BIN := $(VENV)/bin
# Rules call `bbmn ...`: the venv's console scripts must be on PATH for snakemake's jobs.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint clean-results

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/snakemake --cores $(CORES)

test: install
	$(BIN)/python -m pytest -q
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow rules

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow rules

clean-results:
	rm -rf results .snakemake mlflow.db mlartifacts
