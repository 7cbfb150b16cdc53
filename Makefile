# Two entry points: `make demo` (the main job on embedded defaults) and `make test`.
# Both create .venv on first use: torch from the machine's CPU wheel via pip, the rest via uv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-all lint typecheck bench clean mutation

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/detops demo

# Tests in TEST_WORKERS processes (pytest-xdist; `auto`: one per core); TEST_WORKERS=0 runs one process.
TEST_WORKERS ?= auto
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(XDIST)

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest $(XDIST) -m ""

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# Mutation testing over the maths, augmentation and platform files ([tool.mutmut] in pyproject.toml;
# slow, not part of `make test`). MUTANTS narrows the run, e.g. MUTANTS='models.nms*'; see
# tests/MUTATION.md. One MLflow server serves every mutant's tests (tests/servers.py with-mlflow).
MUTMUT_CHILDREN ?= 2
MUTANTS ?=
mutation: $(BIN)/.installed
	$(BIN)/python -P tests/servers.py with-mlflow $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

clean:
	rm -rf $(VENV) .detops
