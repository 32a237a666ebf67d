# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv when it is missing. torch==2.13.0 is installed first: it is the CPU build
# this project pins, and installing it before the rest keeps pip from pulling CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NAME ?= demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install browser demo test test-fast lint bench clean-runs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive the system's Chromium and need a Korean font: installed when missing
# (as root, with apt-get); otherwise one line says what to install, and make stops.
BROWSER_DEBS := chromium fonts-nanum
browser:
	@if command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi nanum; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing $(BROWSER_DEBS) for the browser tests (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_DEBS) >/dev/null; } \
	    || { echo "make: apt-get could not install $(BROWSER_DEBS) (see above)"; exit 1; }; \
	else \
	  echo "make: the browser tests need Chromium and a Korean font; install them as root: apt-get update && apt-get install -y $(BROWSER_DEBS)"; \
	  exit 1; \
	fi

# Optuna TPE + ASHA on the CPU profile (e5-small-ko, KorSTS), then the report.
demo: $(STAMP)
	$(PY) run_search.py --method optuna --profile cpu --name $(NAME)

# PYTEST_ARGS picks tests, e.g. make test PYTEST_ARGS=tests/test_serve_browser.py
# Test files run on TEST_WORKERS pytest-xdist processes (a file's tests stay on one worker, so
# the end-to-end runs a file shares run once, each worker with its own Ray temp folder): one
# per 3 cores, since a smoke search keeps 2-3 cores busy. On 2 cores that is 0, serial: three
# workers there ran 28% faster but overloaded the cores until searches timed out
# (docs/benchmarks.md). `make test TEST_WORKERS=4` overrides it. The 25 slowest tests are listed
# at the end: where the suite's time goes (docs/benchmarks.md, issue 27).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) / 3 )))
test: $(STAMP) browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

# Unit tests only (no Ray search): seconds.
test-fast: $(STAMP) browser
	$(PY) -m pytest -q -m "not e2e"

# ruff, then mypy's type check of tuning/, reports/ and run_search.py ([tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Every benchmark at its default size, one markdown table each (over an hour; `python -m benchmarks --help`).
bench: $(STAMP)
	$(PY) -m benchmarks all
