# One entry point for people and CI: `make test` is what .ci/run runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := topology alerts watchdog

.PHONY: install demo format check test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The bundled example: the 2017 outage, checked and then the maneuver that
# caused it asked about before doing it (exit 2: a critical node goes down).
demo: install
	-$(BIN)/watchdog check examples/oms-2017.yaml
	-$(BIN)/watchdog blast-radius examples/oms-2017.yaml --shutdown farm-oms-1

format: install
	$(BIN)/ruff format $(PACKAGES) tests benchmarks
	$(BIN)/ruff check --fix $(PACKAGES) tests benchmarks

check: install
	$(BIN)/ruff format --check $(PACKAGES) tests benchmarks
	$(BIN)/ruff check $(PACKAGES) tests benchmarks
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports

test: check
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/topology_engine.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
