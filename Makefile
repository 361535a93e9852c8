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
# watching them on http://$(DEMO_LISTEN) until Ctrl-C, with a token for the
# maneuver and silence commands. `make demo DEMO_LISTEN=127.0.0.1:9200`
# moves its API.
DEMO_LISTEN ?= 127.0.0.1:9120
DEMO_TOKEN ?= demo-token
demo: install
	@$(BIN)/python examples/demo/targets.py & targets=$$!; \
	trap 'kill $$targets 2>/dev/null' EXIT INT TERM; \
	sleep 0.5; kill -0 $$targets 2>/dev/null || exit 3; \
	echo "the API: http://$(DEMO_LISTEN) (make demo DEMO_LISTEN=HOST:PORT to move it)"; \
	echo "in another terminal: export WATCHDOG_URL=http://$(DEMO_LISTEN) WATCHDOG_API_TOKEN=$(DEMO_TOKEN)"; \
	WATCHDOG_API_TOKEN=$(DEMO_TOKEN) $(BIN)/watchdog run examples/demo/estate.yaml --listen $(DEMO_LISTEN)

# The 2017 outage, checked, then the fatal maneuver asked about first; each
# command's exit code is shown (scripts gate on them), none fails make.
what-if: install
	@$(BIN)/watchdog check examples/oms-2017.yaml; echo "exit code $$? (1: findings)"
	@echo
	@$(BIN)/watchdog blast-radius examples/oms-2017.yaml --shutdown farm-oms-1; \
	echo "exit code $$? (2: a critical node goes down)"

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
