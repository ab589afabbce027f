# The commands the README shows. `make run` starts the whole service on this
# machine; `make test` runs the test suite. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

# Detectron2 is not on PyPI. Where DETECTRON2_WHEELS holds a wheel of it (CI's
# ../shared/wheels does), `make install` adds it and its pinned dependencies (the
# detectron2 extra) to .venv, and its tests run (tests/conftest.py,
# require_detectron2); without one they skip. The GPU images build it from its
# repository (docker/).
DETECTRON2_WHEELS ?= ../shared/wheels
export DETECTRON2_WHEELS
DETECTRON2_WHEEL := $(lastword $(sort $(wildcard $(DETECTRON2_WHEELS)/detectron2-*.whl)))

install: $(VENV)/.installed $(if $(DETECTRON2_WHEEL),$(VENV)/.detectron2)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.detectron2: $(VENV)/.installed $(DETECTRON2_WHEEL)
	$(BIN)/python -m pip install --quiet '$(DETECTRON2_WHEEL)' -e '.[detectron2]'
	touch $@

run: install
	$(BIN)/detector up

# The tests run in two passes. The quick ones on TEST_WORKERS processes
# (pytest-xdist; auto: one per CPU, 0: pytest's own process), each running the
# model on one thread (OMP_NUM_THREADS=1, unless set: two processes whose torch
# each spins on every core are slower together than one alone;
# docs/performance.md, "The test suite"). Then the slow ones, which start real
# workers and servers and wait on them, in one process, so that they never
# compete for the CPU with each other. Exit 5 (no test collected) is no failure.
TEST_WORKERS ?= auto

test: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

bench: install
	$(BIN)/detector bench --out bench-out

lint: install
	$(BIN)/ruff check detector tests
	$(BIN)/ruff format --check detector tests
	$(BIN)/mypy detector
	$(BIN)/lint-imports

clean:
	rm -rf instance .pytest_cache .mypy_cache .ruff_cache
