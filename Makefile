# One Makefile for people and CI. `make install`, `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME ?= $(CURDIR)/.ferryman

.PHONY: install demo test test-fast lint format bench clean

install: $(BIN)/ferryman

$(BIN)/ferryman: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# The main job: a real sync of airbyte-source-faker (from PyPI) into the embedded DuckDB.
demo: install
	FERRYMAN_HOME=$(DEMO_HOME) $(BIN)/ferryman sync \
		--source pypi:airbyte-source-faker==7.2.1 --source-config '{"count": 10000, "seed": 42}'

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: install
	$(BIN)/python benchmarks/sync_throughput.py

clean:
	rm -rf $(VENV) .ferryman build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
