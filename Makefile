# langgrasp tasks. The Makefile creates and uses its own virtual environment (.venv), so a fresh
# machine needs nothing but Python 3.10+ and make. `make help` lists the targets.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= lggd-tiny
SEED ?=
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
	bench-runtime bench-loop bench-stop bench-voice serve devices-sim calibrate-demo clean

help: ## list the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# pyrealsense2's Linux wheels load the system's libusb-1.0 (shared/research/runtime.md 1.1); as
# root on Debian/Ubuntu it is installed here, elsewhere the note says what to install.
SYSTEM_STAMP := $(VENV)/.system-libs
$(SYSTEM_STAMP):
	@mkdir -p $(VENV)
	@if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing libusb-1.0-0 (needed by pyrealsense2)"; \
		apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null; }; \
	else echo "note: install libusb-1.0 (Debian/Ubuntu: sudo apt-get install libusb-1.0-0) for RealSense cameras"; fi
	@touch $(SYSTEM_STAMP)

# The test suite also drives the web console in Debian's Chromium and speaks to the voice
# commands with espeak-ng; those tests skip, saying why, where these cannot be installed.
TEST_SYSTEM_STAMP := $(VENV)/.system-test
$(TEST_SYSTEM_STAMP): $(SYSTEM_STAMP)
	@missing=""; for tool in chromium espeak-ng; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing for the browser and voice tests"; \
		apt-get install -y -q $$missing >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null; } || \
		echo "note: could not install$$missing; the browser/voice tests will skip"; \
	else echo "note: install$$missing (Debian/Ubuntu: sudo apt-get install$$missing) for the browser and voice tests"; fi
	@touch $(TEST_SYSTEM_STAMP)

# The runtime alone (no torch): what a robot PC or a Jetson installs; enough for `make demo`.
RUNTIME_STAMP := $(VENV)/.installed-runtime
$(RUNTIME_STAMP): pyproject.toml $(SYSTEM_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[runtime]"
	@touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[train,runtime,dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install langgrasp with the train, runtime and dev extras

demo: $(RUNTIME_STAMP) ## set up the runtime (no torch) and run a pick on a synthetic scene against simulated devices
	$(BIN)/langgrasp demo $(if $(SEED),--seed $(SEED)) --out demo.png

test: $(STAMP) $(TEST_SYSTEM_STAMP) lint ## lint, then run the whole test suite
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
	$(BIN)/langgrasp synth --out data/synthetic --n 200 --seed $(or $(SEED),0)

bench-synthetic: $(STAMP) ## train lggd-tiny on synthetic scenes for MINUTES (30), with and without DCVLF
	$(BIN)/python benchmarks/bench_synthetic.py --minutes $(MINUTES)

bench-runtime: $(STAMP) ## CPU latency of PyTorch eager vs ONNX Runtime fp32/int8, both configs (~10 min)
	$(BIN)/python benchmarks/bench_runtime.py $(if $(CHECKPOINT_TINY),--checkpoint-tiny $(CHECKPOINT_TINY)) $(if $(CHECKPOINT_RN50),--checkpoint-rn50 $(CHECKPOINT_RN50))

bench-loop: $(STAMP) ## frame-to-command latency of the robot loop, stage by stage (demo bundle, CPU)
	$(BIN)/python benchmarks/bench_loop.py

serve: $(RUNTIME_STAMP) ## web console + HTTP API on http://127.0.0.1:8080 over examples/robot.toml (dry run; make devices-sim in another shell)
	$(BIN)/langgrasp serve --config $(or $(CONFIG),examples/robot.toml) $(SERVE_ARGS)

bench-stop: $(STAMP) ## stop latency: HTTP stop request -> arm-stop register write (simulators)
	$(BIN)/python benchmarks/bench_stop.py

bench-voice: $(STAMP) ## offline speech recognition of robot commands on espeak-ng speech, per voice
	$(BIN)/python benchmarks/bench_voice.py

devices-sim: $(RUNTIME_STAMP) ## run the simulated Robotiq gripper (port 5020) and arm (port 5021) until Ctrl-C
	$(BIN)/langgrasp devices sim

calibrate-demo: $(RUNTIME_STAMP) ## synthetic eye-in-hand calibration end to end (board, capture, hand-eye, verify)
	rm -rf calib-demo && mkdir -p calib-demo
	$(BIN)/langgrasp calibrate board --board charuco-a4 --out calib-demo/board
	yes '' | head -15 | $(BIN)/langgrasp calibrate capture --synthetic eye-in-hand --board charuco-a4 --out calib-demo/captures
	$(BIN)/langgrasp calibrate handeye --captures calib-demo/captures --setup eye-in-hand --board charuco-a4 --out calib-demo/calibration.json
	$(BIN)/langgrasp calibrate verify --calibration calib-demo/calibration.json --captures calib-demo/captures --out calib-demo/verify

clean: ## remove the virtual environment, caches and generated pictures
	rm -rf $(VENV) .pytest_cache .ruff_cache demo.png calib-demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
