# langgrasp tasks. The Makefile creates and uses its own virtual environment (.venv), so a fresh
# machine needs nothing but Python 3.10+ and make. `make help` lists the targets.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= lggd-tiny
SEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format info bench-model clean

help: ## list the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[train,runtime,dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install langgrasp with the train, runtime and dev extras

demo: $(STAMP) ## detect on a generated scene with the untrained tiny model; writes demo.png
	$(BIN)/langgrasp demo --model $(MODEL) --seed $(SEED) --out demo.png

test: $(STAMP) lint ## lint, then run the whole test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

info: $(STAMP) ## print size and GFLOPs of both model configs
	$(BIN)/langgrasp info --model lggd-rn50
	$(BIN)/langgrasp info --model lggd-tiny

bench-model: $(STAMP) ## CPU forward latency (median, batch 1) and GFLOPs of both configs
	$(BIN)/python benchmarks/bench_model.py

clean: ## remove the virtual environment, caches and generated pictures
	rm -rf $(VENV) .pytest_cache .ruff_cache demo.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
