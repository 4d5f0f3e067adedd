# sercore: the two commands the README gives are `make reports` (the main job) and `make test`.
# Each sets itself up first (idempotent): a .venv with sercore installed and a Jupyter kernel named
# `sercore` registered with an absolute interpreter path.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.sercore-installed
CORPUS ?= synthetic
PROFILE ?= quick
PYTEST_ARGS ?=
# test processes (pytest-xdist; one test file per process at a time): 2 fits this project's 2-core CI machine,
# where two processes finish the suite about a quarter sooner than one. PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= 2
# Transparent huge pages for XLA:CPU's large per-step buffers (glibc >= 2.35; see sercore/runtime.py):
# zhao2d trains about 1.3x faster. SERCORE_HUGEPAGES=0 leaves GLIBC_TUNABLES alone.
ifneq ($(SERCORE_HUGEPAGES),0)
export GLIBC_TUNABLES := $(if $(GLIBC_TUNABLES),$(GLIBC_TUNABLES):)glibc.malloc.hugetlb=1
endif

.PHONY: setup test reports bench clean-reports help

help:
	@echo "make reports   regenerate every report (CORPUS=$(CORPUS) PROFILE=$(PROFILE))"
	@echo "make test      run the test suite"
	@echo "make bench     print and save the performance figures"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --prefix $(abspath $(VENV)) --name sercore --display-name "Python (sercore)" >/dev/null
	$(PY) -m sercore.runtime $(abspath $(VENV))/share/jupyter/kernels/sercore/kernel.json >/dev/null
	@touch $@

test: setup
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

reports: setup
	$(PY) -m sercore reports --corpus $(CORPUS) --profile $(PROFILE)

bench: setup
	$(PY) -m sercore bench
