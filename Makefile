# nasmed: two commands do all the set-up on a fresh machine.
#   make demo   install, then search on the embedded synthetic task and report
#   make test   install, lint (ruff), type-check (mypy), layering (import-linter), tests (pytest)
#
# The install goes into ./.venv. Torch is installed first and only if the venv has none:
# TORCH_SPEC defaults to the CPU build pinned for this project. On a GPU machine, install your
# CUDA build of torch into .venv first (see README), and nothing here will replace it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# nnU-Net v2 for `nasmed export nnunet` and its tests, installed without its declared dependencies:
# dynamic-network-architectures requires timm, which pulls torchvision and a CUDA torch that would
# replace TORCH_SPEC. The `nnunet` extra in setup.cfg lists every other requirement of the two.
NNUNET_NODEPS ?= nnunetv2==2.8.1 dynamic-network-architectures==0.4.4
PYTEST_ARGS ?= -n 2
DEMO_OUT ?= demo_out

.PHONY: install demo test lint typecheck layering pytest figures clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,export,nnunet]"
	$(PY) -m pip install -q --no-deps $(NNUNET_NODEPS)
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/nasmed demo --out $(DEMO_OUT)

lint: install
	$(VENV)/bin/ruff check nasmed decathlon searchspaces tests benchmarks
	$(VENV)/bin/ruff format --check nasmed decathlon searchspaces tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

# the layering contract in .importlinter (lazy imports count)
layering: install
	$(VENV)/bin/lint-imports --no-cache

pytest: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck layering pytest

figures: install
	$(PY) docs/make_figures.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .mypy_cache .ruff_cache .pytest_cache
