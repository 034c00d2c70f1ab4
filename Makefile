# Two commands for users (see README): `make lab` and `make test`. Both create .venv on first use.
# TORCH_SPEC picks the PyTorch build: the default pin gives the CPU wheel on a CPU-only machine
# here and the CUDA build on a Linux GPU machine; e.g. `make setup TORCH_SPEC="torch==2.14.1"`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.kvcourse-installed
ARGS ?=
NB ?= course/00_setup.ipynb
LAB_ROOT ?= course
PYTEST_ARGS ?=

.PHONY: setup lab test release check mutants mutation lint clean-venv

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes (the stamp is newer otherwise): a second
# `make test` installs nothing.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[course,dev]"
	$(PY) -m autograder.labsettings
	touch $(STAMP)

# Containers often run as root, which JupyterLab refuses without --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

# The venv's bin/ goes first on PATH, so `python -m autograder check X.ipynb` works in JupyterLab's
# terminals (they open in course/ and inherit this environment). The learner's own Jupyter config
# folder goes first on JUPYTER_CONFIG_PATH: it turns nbgrader's instructor plugins off for this server
# only (autograder/labsettings.py); `jupyter lab` in an instructor's course folder still has them.
LEARNER_CONFIG := $(abspath $(VENV))/etc/kvcourse-learner
lab: setup
	$(PY) -m autograder.labsettings --learner $(LEARNER_CONFIG)
	JUPYTER_CONFIG_PATH="$(LEARNER_CONFIG)$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))" \
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m jupyter lab --ServerApp.root_dir=$(LAB_ROOT) $(ROOT_FLAG) $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

release: setup
	$(PY) -m autograder release

check: setup
	$(PY) -m autograder check $(NB)

mutants: setup
	$(PY) -m autograder mutants

# Mutation testing of kvlib itself (issue 20), not part of `make test`: about 4,300 mutants over the
# core modules named in pyproject's [tool.mutmut]; MUTANTS="kvlib.memory*" limits it to one module
# (about 440 mutants, 12 minutes on 2 cores). Results stay in mutants/; a second run retests what changed.
MUTANTS ?=
mutation: setup
	$(PY) -m mutmut run --max-children 2 $(MUTANTS)
	$(PY) tests/mutation_report.py

lint: setup
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
