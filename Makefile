# yonglink: `make run` and `make test` are all a fresh machine needs (Python >= 3.11 and make).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.example.yaml

.PHONY: run test lint pytest bench system-deps fhir-examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/yonglink run --config $(CONFIG)

# System packages the tests start for real: RabbitMQ (Debian rabbitmq-server) and headless Chromium.
system-deps:
	@bash scripts/system-deps.sh

# The official FHIR R4B examples (npm hl7.fhir.r4b.examples) that tests/engine/fhir/test_r4b_examples.py
# posts to the FHIR intake, fetched into .cache/fhir-examples.
fhir-examples: system-deps
	@bash scripts/fetch-fhir-examples.sh

lint: $(STAMP)
	$(BIN)/ruff check engine channels tests bench
	$(BIN)/mypy

pytest: $(STAMP) system-deps fhir-examples
	$(BIN)/pytest -q

test: lint pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts .cache
