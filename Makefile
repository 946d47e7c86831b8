# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wattbridge demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check bridge tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/poll.py --wallboxes 3000 --repeat 2
	$(BIN)/python bench/nodered.py --wallboxes 1500 --seconds 5 --repeat 1
	$(BIN)/python bench/memory.py --wallboxes 20000
	$(BIN)/python bench/scale.py --wallboxes 10000 --interval 10 --minutes 0.5

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
