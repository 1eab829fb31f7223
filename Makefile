# AttnX: `make run` starts the exchange on embedded defaults; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The server needs no torch; tests and training do (CPU build, taken from local disk).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup setup-dev run test train lint format protos bench loadtest clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev,train]'
	@touch $@ $(RUN_STAMP)

setup: $(RUN_STAMP)

setup-dev: $(DEV_STAMP)

run: setup
	$(BIN)/attnx serve $(ARGS)

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

train: setup-dev
	$(BIN)/attnx train $(ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: setup-dev
	$(BIN)/python -m protos.generate

bench: setup-dev
	$(BIN)/python -m bench.auction

loadtest: setup-dev  # locust against a fresh exchange; SECONDS=30 USERS=16
	$(BIN)/python -m loadtest.run --seconds $(or $(SECONDS),30) --users $(or $(USERS),16)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
