# Two commands: `make run` (set up + start on embedded defaults) and `make test` (set up + full suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/dicom-gateway serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check gateway workers tests testdata $(wildcard bench)

typecheck: $(TEST_STAMP)
	$(BIN)/mypy --strict gateway workers

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file per process at a time so module
# fixtures are built once; most integration tests wait on servers they start, so 2 workers pay on 2 cores.
PYTEST_WORKERS ?= 2
pytest: $(TEST_STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

# Options go in ARGS, e.g. `make bench ARGS="--instances 300 --only gateway,orthanc-tuned"`; the bench extra adds py-spy.
bench: $(TEST_STAMP)
	@test -x $(BIN)/py-spy || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
