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
# Parameter overrides of `make run`, space-separated KEY=VALUE or NOTEBOOK.KEY=VALUE (run --set).
SET ?=
LAB_PORT ?= 8888
# Browser of the browser tests: Debian's package chromium (installed by `make test-browser`).
CHROMIUM ?= /usr/bin/chromium
EXTRAS := $(TF),notebooks,tensorboard,dicom,dev,lab
STAMP := $(VENV)/.installed-$(TF)
BROWSER_STAMP := $(VENV)/.installed-$(TF)-browser

.PHONY: help install run lab test test-fast test-browser chromium lint format bench demo-spread \
	clean strip

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|demo|full  DATA_DIR=path/to/LiTS  RUN=name  TF=cpu|cuda" \
	  " LAB_PORT=8888  SET=\"KEY=VALUE ...\""

install: $(STAMP) ## create ./.venv with the package (editable) and its dependencies

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert (3, 10) <= sys.version_info[:2] < (3, 14), \
	  "Python 3.10-3.13 needed, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (livertumor)" >/dev/null
	rm -f $(VENV)/.installed-*
	touch $@

# Playwright for the browser tests, on top of the environment above (re-run when it is).
$(BROWSER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS),browser]"
	touch $@

lab: install ## JupyterLab on 127.0.0.1 with the project's kernel, opened at notebooks/ (LAB_PORT=8888)
	$(PY) -m livertumor.series.lab --port $(LAB_PORT)

run: install ## run the notebook series headless (PROFILE=demo on synthetic data; DATA_DIR=... for real LiTS)
	$(PY) -m livertumor run --profile $(PROFILE) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(if $(RUN),--run "$(RUN)") \
	  $(foreach s,$(SET),--set "$(s)")

test: install ## run the test suite (unit tests, notebooks on the smoke profile, nbval)
	$(PY) -m pytest -n 2 --dist loadgroup -m "not browser"

test-fast: install ## unit tests only (no notebook runs)
	$(PY) -m pytest -n 2 -m "not slow and not browser"

test-browser: $(BROWSER_STAMP) chromium ## JupyterLab in headless Chromium: run 01, 02, move the sliders; screenshots in outputs/browser/
	LIVERTUMOR_BROWSER_TESTS=required CHROMIUM="$(CHROMIUM)" \
	  $(PY) -m pytest -p no:xdist -m browser tests/test_browser_notebooks.py

chromium: # Debian's Chromium for the browser tests, when it is missing (needs root and apt-get)
	@if [ -x "$(CHROMIUM)" ]; then \
	  echo "browser: $(CHROMIUM)"; \
	elif [ "$(CHROMIUM)" = /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] \
	    && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium with apt-get"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation fonts-dejavu-core >/dev/null && test -x "$(CHROMIUM)"; \
	else \
	  echo "no Chromium at $(CHROMIUM): install it (Debian: sudo apt-get install chromium)" \
	    "or pass CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; \
	fi

lint: install ## ruff on lib/, tests/, benchmarks/, notebooks; notebooks must be stored without outputs
	$(VENV)/bin/ruff check lib tests benchmarks notebooks
	$(PY) -m livertumor.series.notebook_checks notebooks

format: install ## format code with ruff and strip notebook outputs
	$(VENV)/bin/ruff format lib tests benchmarks
	$(PY) -m livertumor.series.notebook_checks --strip notebooks

# benchmarks that train models for many minutes run on their own (make demo-spread, README)
LONG_BENCH := benchmarks/demo_spread.py benchmarks/cascade_ablation.py

bench: install ## print speed and memory figures (benchmarks/*.py but the long ones)
	@for b in $(filter-out $(LONG_BENCH),$(wildcard benchmarks/*.py)); do \
	  echo "== $$b"; $(PY) $$b || exit 1; done

demo-spread: install ## the demo profile on seeds 0, 1, 2 against its targets (about 45 minutes)
	$(PY) benchmarks/demo_spread.py

clean: ## remove generated data and outputs (keeps .venv)
	rm -rf outputs/*/ data/processed/*/ data/raw/demo data/raw/demo-study data/raw/demo-smoke \
	  data/raw/demo-smoke-study .pytest_cache
