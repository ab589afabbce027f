# The commands the README shows. `make run` starts the whole service on this
# machine; `make test` runs the test suite. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/detector up

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/detector bench --out bench-out

lint: install
	$(BIN)/ruff check detector tests
	$(BIN)/ruff format --check detector tests
	$(BIN)/mypy detector
	$(BIN)/lint-imports

clean:
	rm -rf instance .pytest_cache .mypy_cache .ruff_cache
