# Two entry points for a fresh clone (README, Quick start):
#   make demo   set everything up, then compare simulator and real backend on the quickstart scenario
#   make test   set everything up, then run the test suite
# torch: TORCH_REQ pins the CPU build that lies on these machines' disk. A GPU user installs their
# CUDA torch into .venv first and runs `make TORCH_REQ= setup` (README, "GPU install").

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_REQ ?= requirements/torch-cpu.txt
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast validate validate-test validate-sim bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(TORCH_REQ)
	@if [ -n "$(TORCH_REQ)" ]; then $(BIN)/pip install -q --disable-pip-version-check -r $(TORCH_REQ); fi
	$(BIN)/pip install -q --disable-pip-version-check -e '.[real,dev]'
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/pssim compare scenarios/quickstart.yaml --out results

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m 'not slow' $(PYTEST_ARGS)

validate: setup
	$(BIN)/pssim compare scenarios/validation/*.yaml --repeats 3 --out results/validation --report-dir reports/validation

# the test half: scenarios drawn at random (scripts/gen_test_suite.py), never tuned on
validate-test: setup
	$(BIN)/pssim compare scenarios/validation-test/*.yaml --repeats 2 --out results/validation-test --report-dir reports/validation-test

# after a simulator change: simulate again against the real runs `make validate` left in results/
validate-sim: setup
	$(BIN)/pssim compare scenarios/validation/*.yaml --reuse-real --out results/validation --report-dir reports/validation

bench: setup
	$(BIN)/python benchmarks/sim_speed.py --quick

lint: setup
	$(BIN)/ruff check pssim psreal tests benchmarks scripts
	$(BIN)/ruff format --check pssim psreal tests benchmarks scripts
	$(BIN)/python scripts/deps.py

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
