# yonglink: `make run` and `make test` are all a fresh machine needs (Python >= 3.11 and make).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.example.yaml

.PHONY: run test lint pytest bench fuzz soak system-deps clean

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

lint: $(STAMP)
	$(BIN)/ruff check engine channels tests bench
	$(BIN)/mypy

pytest: $(STAMP) system-deps
	$(BIN)/pytest -q

test: lint pytest

bench: $(STAMP)
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
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts
