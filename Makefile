# One Makefile for people and CI. `make install`, `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME ?= $(CURDIR)/.ferryman

.PHONY: install demo test test-fast test-images lint format bench bench-docker check-no-extension clean

install: $(BIN)/ferryman

$(BIN)/ferryman: pyproject.toml setup.py src/ferryman/workers/_scan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# Bytecode for the (editable) sources now, as pip does for a wheel: where PYTHONDONTWRITEBYTECODE
	# is set (many images set it) every command would otherwise compile ~100 modules, ~0.1 s.
	$(BIN)/python -m compileall -q src/ferryman
	@touch $@

# The main job: a connection from airbyte-source-faker (PyPI) to the embedded DuckDB, synced with
# progress, then its jobs listed. Safe to run again: what exists already is reused, and the next
# sync is incremental (faker's always_updated: false, else it re-emits every record each time).
FERRYMAN := FERRYMAN_HOME=$(DEMO_HOME) $(BIN)/ferryman
demo: install
	@$(FERRYMAN) sources show faker >/dev/null 2>&1 || $(FERRYMAN) sources create faker \
		--connector pypi:airbyte-source-faker==7.2.1 --config '{"count": 10000, "seed": 42, "always_updated": false}'
	@$(FERRYMAN) destinations show local >/dev/null 2>&1 || $(FERRYMAN) destinations create local \
		--connector builtin:destination-duckdb
	@$(FERRYMAN) connections show faker-to-duckdb >/dev/null 2>&1 || $(FERRYMAN) connections create \
		faker-to-duckdb --source faker --destination local
	$(FERRYMAN) connections sync faker-to-duckdb
	$(FERRYMAN) jobs list

# The Docker tests' images (tests/images/build.py): built when missing, found in well under a
# second when present. Without a Docker engine the Docker tests skip (and fail when CI=true).
test-images: install
	@if docker info >/dev/null 2>&1; then $(BIN)/python tests/images/build.py; \
	else echo "no Docker engine answers: the Docker tests will skip (.ci/docker-up starts one)"; fi

test: install test-images
	$(BIN)/pytest --durations=15

test-fast: install test-images
	$(BIN)/pytest -m "not slow"

# A wheel built where no C compiler works (CC=false here) has no record-path extension and must
# still work: build one, check it holds no compiled module, and run the record path's tests and a
# real sync on the Python loop the way such a wheel runs them (FERRYMAN_NO_EXTENSION=1).
check-no-extension: install
	rm -rf build/no-extension
	CC=false $(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w build/no-extension .
	@if $(BIN)/python -m zipfile -l build/no-extension/ferryman-*.whl | grep -q '\.so'; then \
		echo "the wheel built without a compiler holds a compiled module"; exit 1; fi
	FERRYMAN_NO_EXTENSION=1 $(BIN)/pytest -q -p no:cacheprovider tests/unit/test_record_path.py \
		tests/unit/test_record_path_fuzz.py tests/e2e/test_cli_no_extension.py

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

# The same with both connectors in containers of the test images (needs a Docker engine).
bench-docker: install
	$(BIN)/python benchmarks/sync_throughput.py --launcher docker --records 1000000 --runs 3

clean:
	rm -rf $(VENV) .ferryman build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
