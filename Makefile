# etl-assets: `make run` (the demo, on a bare machine) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_PORT ?= 8765
export DAGSTER_HOME ?= $(CURDIR)/.etl/dagster_home

.PHONY: run test unit lint validate dev check-defs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Demo: SQLite warehouse under .etl/, local DAGSTER_HOME, the shipped sources.yaml and the demo API. The run is
# made through workspace.yaml (etl_assets.defs.launch), so it shows in ingest_all's history in the UI.
run: $(BIN)/.installed
	@mkdir -p $(DAGSTER_HOME) && cp deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/etl-assets validate
	@set -e; \
	$(BIN)/etl-assets demo-api --port $(DEMO_PORT) & api=$$!; trap 'kill $$api 2>/dev/null' EXIT; \
	$(BIN)/python -c "import socket,time,sys; [time.sleep(0.1) for _ in range(100) if socket.socket().connect_ex(('127.0.0.1',$(DEMO_PORT)))]"; \
	$(BIN)/python -m etl_assets.defs.launch ingest_all; \
	$(BIN)/etl-assets tables

test: $(BIN)/.installed lint
	$(BIN)/python -m pytest etl_assets_tests

# The fast subset: no PostgreSQL, no subprocess fleets, no browser (a few seconds per file).
unit: $(BIN)/.installed
	$(BIN)/python -m pytest etl_assets_tests -m "not postgres and not e2e and not slow" -q

lint: $(BIN)/.installed
	$(BIN)/ruff check etl_assets etl_assets_tests benchmarks
	$(BIN)/ruff format --check etl_assets etl_assets_tests benchmarks
	$(BIN)/mypy

validate: $(BIN)/.installed
	$(BIN)/etl-assets validate

# The Dagster UI on http://127.0.0.1:3000 (start `make demo-api` in another shell for the sample sources).
# `dg dev` loads the project of pyproject's [tool.dg] (the same code location as workspace.yaml).
dev: $(BIN)/.installed
	@mkdir -p $(DAGSTER_HOME) && cp -n deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml || true
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg dev

# `dg check defs`: the code location loads (every source, job, schedule, sensor and check).
check-defs: $(BIN)/.installed
	@mkdir -p $(DAGSTER_HOME) && cp -n deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml || true
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs

demo-api: $(BIN)/.installed
	$(BIN)/etl-assets demo-api --port $(DEMO_PORT)

clean:
	rm -rf .etl
