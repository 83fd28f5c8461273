# fashionnet: `make run` sets up and runs the pipeline; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
# The project's environment (Prefect home, caches, quiet TensorFlow) lives in fashionnet/settings.py:
# `fashionnet run` and the tests apply it themselves; long-running commands run through this.
WITH_SETTINGS := $(BIN)/python -m fashionnet.settings

.PHONY: help setup run test test-fast lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

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

test-fast: setup  ## the tests without Prefect, servers, a browser or real data (under a minute)
	$(BIN)/pytest -m "not prefect and not server and not realdata and not browser" $(ARGS)

lint: setup  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# This machine's environment pins OpenBLAS to older kernels (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE)
# for old builds' sake; the benchmark alone lets a current NumPy choose its own, as a user's would.
bench: setup  ## compare with Keras and the pandas baseline on the real data (~10 min): benchmarks/results.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -m benchmarks.bench $(ARGS)

clean:  ## remove generated data, models, reports and caches (keeps .venv)
	rm -rf data/raw data/parquet data/predictions data/.run.lock models reports/runs reports/latest reports/history.csv reports/history.png reports/index.html reports/*.damaged-* .prefect .cache

# Scheduled runs (prefect.yaml): a Prefect server on this machine, then either `deploy` + `worker`
# or `serve`. Each talks to the server at SERVER_URL, whatever PREFECT_API_URL says elsewhere.
PREFECT_PORT ?= 4200
SERVER_URL := http://127.0.0.1:$(PREFECT_PORT)
# The work_pool name in prefect.yaml.
WORK_POOL := fashionnet
server deploy worker serve: export PREFECT_API_URL = $(SERVER_URL)/api
require_server = $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(SERVER_URL)/api/health', timeout=5)" 2>/dev/null \
	|| { echo "No Prefect server at $(SERVER_URL): start one with 'make server' in another terminal." >&2; exit 1; }

.PHONY: server deploy worker serve

server: setup  ## start a Prefect server and its UI on 127.0.0.1 (PREFECT_PORT, default 4200)
	@echo "Prefect UI: $(SERVER_URL)   API: $(SERVER_URL)/api   Prefect home: $$($(WITH_SETTINGS) printenv PREFECT_HOME)"
	@echo "Then, in other terminals: make deploy, make worker (or make serve). Stop: Ctrl-C."
	$(WITH_SETTINGS) $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: setup  ## create the work pool if missing and deploy prefect.yaml (daily at 03:00 UTC)
	@$(require_server)
	@$(WITH_SETTINGS) $(BIN)/prefect work-pool inspect $(WORK_POOL) >/dev/null 2>&1 \
		|| $(WITH_SETTINGS) $(BIN)/prefect work-pool create $(WORK_POOL) --type process
	$(WITH_SETTINGS) $(BIN)/prefect --no-prompt deploy --all --prefect-file prefect.yaml
	@echo "Deployed: $(SERVER_URL)/deployments. Runs need a worker: make worker."
	@echo "Run it now: PREFECT_API_URL=$(SERVER_URL)/api $(BIN)/prefect deployment run fashionnet/daily --watch"
	@echo "Stop the schedule: pause it on the deployment's page in the UI."

worker: setup  ## start a worker that runs the deployment's flow runs (uses FASHIONNET_RAW_DIR)
	@$(require_server)
	@echo "Worker on pool $(WORK_POOL); its runs: $(SERVER_URL)/runs   Stop: Ctrl-C."
	$(WITH_SETTINGS) $(BIN)/prefect worker start --pool $(WORK_POOL)

serve: setup  ## deploy and run prefect.yaml's schedule from this one process, without a worker
	@$(require_server)
	@echo "Serving fashionnet/daily-served; its runs: $(SERVER_URL)/runs   Stop: Ctrl-C (pauses its schedule)."
	$(WITH_SETTINGS) $(BIN)/python -m flows.serve
