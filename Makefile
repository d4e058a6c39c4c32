# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install venv run test lint bench clean

# `make run` and `make test` may start at the same time on a fresh clone: one of them builds
# .venv while the other waits on the lock, then finds it up to date.
install:
	@flock $(VENV).lock $(MAKE) --no-print-directory venv

venv: $(BIN)/careloop

$(BIN)/careloop: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/careloop

## Install and start careloop on the embedded default (SQLite, embedded worker).
run: install
	$(BIN)/careloop serve

## Install and run the whole test suite (lint, types, tests on SQLite and PostgreSQL).
test: install
	bash scripts/services-up
	bash scripts/chromium-up
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy careloop
	$(BIN)/lint-imports
	$(BIN)/deptry .
	$(BIN)/python scripts/wheel-smoke
	$(BIN)/pytest -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy careloop
	$(BIN)/lint-imports
	$(BIN)/deptry .

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(VENV).lock data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
