# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv when it is missing. torch==2.13.0 is installed first: it is the CPU build
# this project pins, and installing it before the rest keeps pip from pulling CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NAME ?= demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install demo test test-fast lint bench clean-runs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Optuna TPE + ASHA on the CPU profile (e5-small-ko, KorSTS), then the report.
demo: $(STAMP)
	$(PY) run_search.py --method optuna --profile cpu --name $(NAME)

test: $(STAMP)
	$(PY) -m pytest -q

# Unit tests only (no Ray search): seconds.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every benchmark at its default size, one markdown table each (over an hour; `python -m benchmarks --help`).
bench: $(STAMP)
	$(PY) -m benchmarks all
