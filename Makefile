# fashionnet: `make run` sets up and runs the pipeline; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

# Project-local Prefect and caches; quiet TensorFlow; Prefect telemetry off (offline machines).
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_EXTRA_LOGGERS ?= fashionnet
export TF_CPP_MIN_LOG_LEVEL ?= 3
export TF_ENABLE_ONEDNN_OPTS ?= 0
export KERAS_HOME ?= $(CURDIR)/.cache/keras
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.PHONY: help setup run test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/fashionnet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tensorflow,dev]'
	touch $@

setup: $(BIN)/fashionnet  ## create .venv and install fashionnet with TensorFlow and the test tools

run: setup  ## run the pipeline with its defaults (options: make run ARGS="--epochs 5")
	$(BIN)/fashionnet run $(ARGS)

test: setup  ## run the test suite (real-data tests use ../shared/fashion-mnist when present)
	$(BIN)/pytest $(ARGS)

lint: setup  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove generated data, models, reports and caches (keeps .venv)
	rm -rf data/raw data/parquet data/predictions data/.run.lock models reports/runs reports/latest reports/history.csv .prefect .cache
