# The two set-up commands are `make demo` and `make test`; each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint format typecheck bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dtpush needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dtpush demo

lint: $(STAMP)
	$(BIN)/ruff check receiver handlers tests bench
	$(BIN)/ruff format --check receiver handlers tests bench

format: $(STAMP)
	$(BIN)/ruff format receiver handlers tests bench
	$(BIN)/ruff check --fix receiver handlers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest $(BENCH_ARGS)

clean:
	rm -rf $(VENV) dtpush-data .pytest_cache .mypy_cache .ruff_cache
