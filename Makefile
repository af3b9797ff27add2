# The two commands of the README. Each sets itself up: a .venv with the project installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo docs test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jxc needs Python 3.11 or newer (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo's central serves the user guide at /guide/ from var/guide, so it is built first.
demo: $(STAMP) docs
	$(BIN)/jxc demo

# The user guide (docs/guide, MkDocs): one static site per language into var/guide/<tag>,
# where central serves it (docs/guide/README.md). --strict: a broken link or a missing
# screenshot fails the build.
GUIDE_OUT ?= var/guide
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -f docs/guide/mkdocs.en.yml -d $(abspath $(GUIDE_OUT))/en
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -f docs/guide/mkdocs.zh-CN.yml -d $(abspath $(GUIDE_OUT))/zh-CN

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Three workers on a two-core machine: much of a test's time is spent waiting on a device,
# a child process or a database (a full run with two workers kept the cores only about
# half busy: 1,518 CPU-s in 1,490 s), so a third worker fills the waits (docs/performance.md).
# PYTEST_WORKERS=0 runs the suite in one process (easier to debug). --durations=30 prints
# the slowest tests of every run (CI's log included), to see where the budget goes. worksteal keeps the
# order tests/conftest.py gives (the long process tests first) and lets an idle worker take
# the end of another's queue, so none is left with a long test at the end.
PYTEST_WORKERS ?= 3

# Bytecode is cached under .venv/pycache even where the environment says not to write it
# (PYTHONDONTWRITEBYTECODE=1 on the machines that run this): otherwise every worker
# compiles and assertion-rewrites every module again at collection (28 against 14 CPU-s a
# worker), and every central or edge process a test starts compiles the project again
# (0.3-0.5 CPU-s of a central's 2 s of imports). The tree itself stays free of __pycache__.
PYCACHE := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache

pytest: $(STAMP)
	$(PYCACHE) $(BIN)/pytest -n $(PYTEST_WORKERS) --durations=30 $(if $(filter 0,$(PYTEST_WORKERS)),,--dist worksteal)

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
