# Two commands a new user needs: `make demo` and `make test`. Each creates .venv and installs
# everything the project needs on first use: pgan with all its extras, at the known-good versions of
# constraints.txt (pyproject.toml itself states ranges), and the MobileNetV2 ImageNet file unpacked
# into the torch hub cache for offline use. `pip check` must pass in this venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pgan-installed

.PHONY: install demo test test-fast test-slow lint bench clean configs docs-figures results-tables

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,all]'
	$(BIN)/python tools/install_weights.py
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pgan demo --out runs/demo --data data/demo

test: install lint
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks tools

bench: install
	$(BIN)/python benchmarks/synth_variants.py
	$(BIN)/python benchmarks/eval_speed.py

# Figures of docs/ that a command takes (never a test): the search page's two screenshots, in headless
# chromium (Debian's, /usr/bin/chromium). About two minutes of CPU the first time (it trains a small model
# under data/serve-page), seconds after that.
docs-figures: install
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/serve_page.py

# The results tables of docs/results.md, from the JSON the benchmarks wrote in docs/ (the tests check they agree).
results-tables: install
	$(BIN)/python benchmarks/results_tables.py

# configs/synth_*.yaml and configs/custom_*.yaml are generated from pgan.recipes (the one source of truth of the CPU recipe).
configs: install
	$(BIN)/python -c "from pgan.recipes import write_configs; write_configs('configs')"

clean:
	rm -rf runs/demo data/demo
