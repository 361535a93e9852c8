# One entry point for people and CI: `make test` is what .ci/run runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := topology alerts watchdog

.PHONY: install demo what-if format check test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The bundled example, live: local endpoints (one failing) and the daemon
# watching them on http://127.0.0.1:9120 until Ctrl-C.
demo: install
	@$(BIN)/python examples/demo/targets.py & targets=$$!; \
	trap 'kill $$targets 2>/dev/null' EXIT INT TERM; \
	$(BIN)/watchdog run examples/demo/estate.yaml

# The 2017 outage, checked, then the fatal maneuver asked about first.
what-if: install
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
