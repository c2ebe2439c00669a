# yonglink: `make run` and `make test` are all a fresh machine needs (Python >= 3.11 and make).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs the runtime dependencies only; `make test` (lint, pytest, bench) adds
# the `test` extra (pytest, ruff, mypy, playwright...). Each is redone when pyproject.toml changes.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
CONFIG ?= config.example.yaml

.PHONY: run test lint pytest bench fuzz soak system-deps fhir-examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/yonglink run --config $(CONFIG)

# System packages the tests start for real: RabbitMQ (Debian rabbitmq-server) and headless Chromium.
system-deps:
	@bash scripts/system-deps.sh

# The official FHIR R4B examples (npm hl7.fhir.r4b.examples) that tests/engine/fhir/test_r4b_examples.py
# posts to the FHIR intake, fetched into .cache/fhir-examples.
fhir-examples: system-deps
	@bash scripts/fetch-fhir-examples.sh

lint: $(TEST_STAMP)
	$(BIN)/ruff check engine channels tests bench
	$(BIN)/mypy

pytest: $(TEST_STAMP) system-deps fhir-examples
	$(BIN)/pytest -q

test: lint pytest

bench: $(TEST_STAMP)
	$(BIN)/python bench/run_all.py

# Long fuzzing campaigns: the property tests of tests/fuzz/ with FUZZ_FACTOR (default 50) times the cases of
# `make test`, random instead of derandomized, failing examples kept in tests/fuzz/corpus/hypothesis/.
FUZZ_FACTOR ?= 50
fuzz: $(STAMP)
	YONGLINK_FUZZ=1 YONGLINK_FUZZ_FACTOR=$(FUZZ_FACTOR) $(BIN)/pytest -q tests/fuzz --timeout=0

# Soak: mixed MLLP/HTTP/AMQP traffic against a flapping destination (bench/soak.py; MINUTES default 60).
MINUTES ?= 60
soak: $(STAMP) system-deps
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts .cache
