# langgrasp tasks. The Makefile creates and uses its own virtual environment (.venv), so a fresh
# machine needs nothing but Python 3.10+ and make. `make help` lists the targets.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= lggd-tiny
SEED ?= 0
DATASET ?= synthetic
DATA_ROOT ?=
RUN ?= runs/$(DATASET)-$(MODEL)
TRAIN_ARGS ?=
MINUTES ?= 30
# `make train DATASET=...` names -> loader and splits (OCID-VLG: the `multiple` version's train/val;
# Grasp-Anything++ has no validation split, so training runs without one).
train_dataset_ocid := --dataset ocid-vlg --dataset-option version=multiple --set train_split=train --set val_split=val
train_dataset_grasp-anything := --dataset grasp-anything --set train_split=train --set val_split=
train_dataset_synthetic := --dataset synthetic

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format info bench-model train synth bench-synthetic \
	bench-runtime calibrate-demo clean

help: ## list the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

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

train: $(STAMP) ## make train DATASET=ocid|grasp-anything|synthetic DATA_ROOT=DIR [MODEL=lggd-rn50]; rerun resumes
	@test -n "$(train_dataset_$(DATASET))" || { echo "DATASET must be ocid, grasp-anything or synthetic (got '$(DATASET)')"; exit 2; }
	$(BIN)/langgrasp train $(train_dataset_$(DATASET)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --model $(MODEL) --out $(RUN) $(if $(wildcard $(RUN)/checkpoints/latest.json),--resume) $(TRAIN_ARGS)

synth: $(STAMP) ## write 200 synthetic scenes per split in the OCID-VLG format to data/synthetic
	$(BIN)/langgrasp synth --out data/synthetic --n 200 --seed $(SEED)

bench-synthetic: $(STAMP) ## train lggd-tiny on synthetic scenes for MINUTES (30), with and without DCVLF
	$(BIN)/python benchmarks/bench_synthetic.py --minutes $(MINUTES)

bench-runtime: $(STAMP) ## CPU latency of PyTorch eager vs ONNX Runtime fp32/int8, both configs (~10 min)
	$(BIN)/python benchmarks/bench_runtime.py $(if $(CHECKPOINT_TINY),--checkpoint-tiny $(CHECKPOINT_TINY)) $(if $(CHECKPOINT_RN50),--checkpoint-rn50 $(CHECKPOINT_RN50))

calibrate-demo: $(STAMP) ## synthetic eye-in-hand calibration end to end (board, capture, hand-eye, verify)
	rm -rf calib-demo && mkdir -p calib-demo
	$(BIN)/langgrasp calibrate board --board charuco-a4 --out calib-demo/board
	yes '' | head -15 | $(BIN)/langgrasp calibrate capture --synthetic eye-in-hand --board charuco-a4 --out calib-demo/captures
	$(BIN)/langgrasp calibrate handeye --captures calib-demo/captures --setup eye-in-hand --board charuco-a4 --out calib-demo/calibration.json
	$(BIN)/langgrasp calibrate verify --calibration calib-demo/calibration.json --captures calib-demo/captures --out calib-demo/verify

clean: ## remove the virtual environment, caches and generated pictures
	rm -rf $(VENV) .pytest_cache .ruff_cache demo.png calib-demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
