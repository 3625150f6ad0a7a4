# Liver tumor segmentation notebooks. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# TensorFlow build: cpu (tensorflow-cpu, default) or cuda (tensorflow[and-cuda], NVIDIA GPUs).
TF ?= cpu
PROFILE ?= demo
DATA_DIR ?=
RUN ?=
STAMP := $(VENV)/.installed-$(TF)

.PHONY: help install run test test-fast lint format bench clean strip

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|demo|full  DATA_DIR=path/to/LiTS  RUN=name  TF=cpu|cuda"

install: $(STAMP) ## create ./.venv with the package (editable) and its dependencies

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert (3, 10) <= sys.version_info[:2] < (3, 14), \
	  "Python 3.10-3.13 needed, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(TF),dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (livertumor)" >/dev/null
	rm -f $(VENV)/.installed-*
	touch $@

run: install ## run the notebook series headless (PROFILE=demo on synthetic data; DATA_DIR=... for real LiTS)
	$(PY) -m livertumor run --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(if $(RUN),--run "$(RUN)")

test: install ## run the test suite (unit tests, notebooks on the smoke profile, nbval)
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: install ## unit tests only (no notebook runs)
	$(PY) -m pytest -n 2 -m "not slow"

lint: install ## ruff on lib/, tests/, benchmarks/, notebooks; notebooks must be stored without outputs
	$(VENV)/bin/ruff check lib tests benchmarks notebooks
	$(PY) -m livertumor.notebook_checks notebooks

format: install ## format code with ruff and strip notebook outputs
	$(VENV)/bin/ruff format lib tests benchmarks
	$(PY) -m livertumor.notebook_checks --strip notebooks

bench: install ## print speed and memory figures (benchmarks/*.py)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## remove generated data and outputs (keeps .venv)
	rm -rf outputs/*/ data/processed/*/ data/raw/demo .pytest_cache
