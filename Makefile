# Every target bootstraps itself on a fresh Debian machine: a virtualenv with the
# package and its dev extras, and Prosody and Lua from apt when they are missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= .demo

.PHONY: all demo test bench lint unit e2e prosody lua setup generate clean help

help:
	@echo "make demo   - run the whole system on the embedded sandbox"
	@echo "make test   - lint, then the whole test suite (real Prosody, sandbox API server)"
	@echo "make bench  - benchmarks, printing their numbers"
	@echo "make lint   - ruff, mypy --strict, import-linter"
	@echo "make generate - the chart's copies of crds/ and docs/crd-reference.md, after a CRD change"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) prosody lua

prosody:
	@command -v prosody >/dev/null && command -v openssl >/dev/null || { \
	  echo "installing prosody and openssl from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody openssl >/dev/null; }
	@command -v kubectl >/dev/null || echo "warning: kubectl not found; the kubectl tests will fail" >&2

# Lua runs the chart's Argo CD health scripts in the tests: 5.1 is the dialect of the
# gopher-lua that Argo CD embeds, 5.4 the current one.
lua:
	@command -v lua5.1 >/dev/null && command -v lua5.4 >/dev/null || { \
	  echo "installing lua5.1 and lua5.4 from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 lua5.4 >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks tools
	$(BIN)/ruff format --check operator tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/pytest tests

unit: $(STAMP) lua
	$(BIN)/pytest tests/unit

e2e: setup
	$(BIN)/pytest tests/e2e

bench: setup
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

# The CRDs live in crds/; the chart carries copies and the docs a reference (tests check both).
generate: $(STAMP)
	cp crds/*.jibri.dev.yaml charts/jibri-operator/crds/
	$(BIN)/python tools/crd_reference.py

demo: setup
	$(BIN)/jibri-sandbox demo --dir $(DEMO_DIR)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
