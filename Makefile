# mt-dnn: the whole set-up behind two commands, on a machine with Python >= 3.10 and make.
#
#   make quickstart     raw GLUE -> features -> a multi-task run -> dev table (bash scripts/quickstart.sh)
#   make test           the test suite, offline
#
# Both create the project environment .venv on first use and reuse it afterwards; an edit of
# requirements.txt or pyproject.toml reinstalls. Overrides (command line or environment):
#   PYTHON=python3.12                      interpreter that creates .venv (default: python3)
#   TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
#                                          torch to install (default: the CPU build torch==2.13.0,
#                                          unless .venv already holds a torch)
#   PYTEST_ARGS="-x tests/test_loss.py"    what pytest runs (default: tests)

PYTHON ?= python3
VENV ?= .venv
DEFAULT_TORCH := torch==2.13.0
TORCH_SPEC ?=
PYTEST_ARGS ?= tests

VENV_PY := $(VENV)/bin/python
# The stamp's name carries a checksum of the dependency files, so any edit of them reinstalls.
DEPS_SUM := $(shell cat requirements.txt pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(DEPS_SUM)
# The last TORCH_SPEC given; a new one reinstalls torch.
TORCH_RECORD := $(VENV)/.torch-spec
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# .venv first on PATH, so that scripts (and tests running them) that call `python` get the project's.
IN_VENV := PATH="$(abspath $(VENV))/bin:$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"

.DEFAULT_GOAL := help
.PHONY: help venv quickstart test lint clean-venv FORCE

help: ## list the targets
	@echo "usage: make <target> [PYTHON=python3] [TORCH_SPEC=\"torch==X ...\"] [PYTEST_ARGS=\"...\"]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'

venv: $(STAMP) ## create or update .venv only

quickstart: $(STAMP) ## run the main job: bash scripts/quickstart.sh (several minutes on 2 CPU cores)
	$(IN_VENV) bash scripts/quickstart.sh

test: $(STAMP) ## run the tests offline (python -m pytest $(PYTEST_ARGS))
	$(IN_VENV) $(OFFLINE) python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check --select I,F (installs ruff into .venv on first use)
	@$(VENV_PY) -m ruff --version >/dev/null 2>&1 || $(VENV_PY) -m pip install --quiet ruff
	$(VENV_PY) -m ruff check --select I,F .

clean-venv: ## delete .venv (the next make quickstart/test rebuilds it)
	rm -rf $(VENV)

$(VENV_PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "error: $(PYTHON) is missing or older than 3.10; pass PYTHON=/path/to/python3.10+" >&2; exit 2; }
	@echo "== creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: $(PYTHON) -m venv failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 2; }

# Rewritten only when TORCH_SPEC is given and differs from the recorded one.
$(TORCH_RECORD): FORCE | $(VENV_PY)
	@if [ -n '$(TORCH_SPEC)' ] && [ "$$(cat $@ 2>/dev/null)" != '$(TORCH_SPEC)' ]; then echo '$(TORCH_SPEC)' > $@; fi
	@[ -e $@ ] || touch $@

$(STAMP): requirements.txt pyproject.toml $(TORCH_RECORD) | $(VENV_PY)
	@if [ -n '$(TORCH_SPEC)' ]; then \
	  echo "== installing $(TORCH_SPEC)"; $(VENV_PY) -m pip install $(TORCH_SPEC); \
	elif $(VENV_PY) -c 'import torch' >/dev/null 2>&1; then \
	  echo "== keeping torch $$($(VENV_PY) -c 'import torch; print(torch.__version__)') already in $(VENV)"; \
	else \
	  echo "== installing $(DEFAULT_TORCH) (CPU build; pass TORCH_SPEC=... for a CUDA one)"; \
	  $(VENV_PY) -m pip install $(DEFAULT_TORCH); \
	fi
	@echo "== installing mt-dnn and its requirements into $(VENV)"
	$(VENV_PY) -m pip install -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

FORCE:
