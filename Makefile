# fashionnet: `make run` sets up and runs the pipeline; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
# The project's environment (Prefect home, caches, quiet TensorFlow) lives in fashionnet/core/settings.py:
# `fashionnet run` and the tests apply it themselves; long-running commands run through this.
WITH_SETTINGS := $(BIN)/python -m fashionnet.core.settings

.PHONY: help setup run test test-fast lint format bench tune clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/fashionnet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tensorflow,dev]'
	touch $@

# Also made once per installation: the empty Prefect database each new project's temporary
# server starts from (Prefect's migrations, run here rather than on every new project).
setup: $(BIN)/fashionnet  ## create .venv and install fashionnet with TensorFlow and the test tools
	@$(BIN)/python -m fashionnet_flows.temporary_server template

run: setup  ## run the pipeline with its defaults (options: make run ARGS="--epochs 5")
	$(BIN)/fashionnet run $(ARGS)

# Two pytest-xdist workers, each taking whole groups of tests (tests/conftest.py says which): while
# one waits on a Prefect server, the other works. ARGS="-n 0" runs the tests in one process.
XDIST := -n 2 --dist loadscope --no-loadscope-reorder
# The slowest tests are listed at the end, so where the suite's time goes stays in sight.
SLOWEST := --durations=15

# pytest keeps the test modules it rewrites (for its assert messages) in __pycache__: where the
# environment forbids bytecode files, each worker would rewrite them all again, every run.
test test-fast: export PYTHONDONTWRITEBYTECODE =

test: setup  ## run the test suite (real-data tests use ../shared/fashion-mnist when present)
	$(BIN)/pytest $(XDIST) $(SLOWEST) $(ARGS)

test-fast: setup  ## the tests without Prefect, servers, a browser, real data, whole pipeline runs or TensorFlow
	$(BIN)/pytest $(XDIST) -m "not prefect and not server and not realdata and not browser and not pipeline and not tensorflow" $(ARGS)

lint: setup  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# This machine's environment pins OpenBLAS to older kernels (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE)
# for old builds' sake; the benchmark alone lets a current NumPy choose its own, as a user's would.
bench: setup  ## seeds, peers, load, 10x data, Dask, predict floor on the real data (~15 min): benchmarks/results.md (ARGS="--quick" or "--only dask,predict")
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -m benchmarks.bench $(ARGS)

tune: setup  ## search the training recipe on the validation split (11 recipes x 5 seeds, ~35 min quiet, resumable): benchmarks/tuning.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python -m benchmarks.tune $(ARGS)

clean:  ## remove generated data, models, reports and caches (keeps .venv)
	rm -rf data/raw data/parquet data/predictions data/.run.lock models reports/runs reports/latest reports/history.csv reports/history.png reports/index.html reports/*.damaged-* .prefect .cache

# Scheduled runs (prefect.yaml): a Prefect server on this machine, then either `deploy` + `worker`
# or `serve`. Each talks to the server at SERVER_URL, whatever PREFECT_API_URL says elsewhere.
# The long-running ones (server, worker, serve) are one command each, which bash and
# fashionnet.core.settings both exec: make's own child is the long-running process, so Ctrl-C
# reaches it and a SIGTERM sent to make is passed on to it by make (see docs/OPERATIONS.md).
# The worker's is flows/worker.py, which runs Prefect's worker and stops it on one signal.
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

deploy: setup  ## deploy prefect.yaml (daily at 03:00 UTC; the inbox every 5 minutes), keeping pauses and alerts; FASHIONNET_ALERT_WEBHOOK=<url>, ALERTS=off (docs/OPERATIONS.md)
	@$(require_server)
	$(if $(ALERTS),FASHIONNET_ALERTS=$(ALERTS) )$(BIN)/python -m fashionnet_flows.deploy
	@echo "Deployed: $(SERVER_URL)/deployments. Runs need a worker: make worker."
	@echo "Run it now: PREFECT_API_URL=$(SERVER_URL)/api $(BIN)/prefect deployment run fashionnet/daily --watch"
	@echo "Pause the schedule: on the deployment's page in the UI, or prefect deployment schedule pause (docs/OPERATIONS.md)."

worker: setup  ## start a worker that runs the deployment's flow runs (uses FASHIONNET_RAW_DIR)
	@$(require_server)
	@echo "Worker on pool $(WORK_POOL); its runs: $(SERVER_URL)/runs   Stop: Ctrl-C (runs in progress end Cancelled)."
	$(WITH_SETTINGS) $(BIN)/python -m fashionnet_flows.worker --pool $(WORK_POOL)

serve: setup  ## deploy and run prefect.yaml's schedules (daily, inbox) from this one process, without a worker
	@$(require_server)
	@echo "Serving fashionnet/daily-served and fashionnet-inbox/inbox-served (the schedules of fashionnet/daily and fashionnet-inbox/inbox are paused meanwhile); their runs: $(SERVER_URL)/runs   Stop: Ctrl-C."
	$(WITH_SETTINGS) $(BIN)/python -m fashionnet_flows.serve
