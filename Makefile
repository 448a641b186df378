# Quickstart targets: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-min install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/emergence-jax demo --out runs/demo

test: install-test
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(BIN)/python -m pytest -q -n 2 -m "not slow" tests

# The tests marked slow (long NUTS fits, the whole quick demo): run before a release, not in CI.
test-slow: install-test
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(BIN)/python -m pytest -q -n 2 -m slow tests

# The lowest versions pyproject.toml allows (ci/min-versions.txt), in their own venv: the bounds are tested.
.venv-min/.installed: pyproject.toml ci/min-versions.txt
	$(PYTHON) -m venv .venv-min
	.venv-min/bin/pip install --quiet --upgrade pip
	.venv-min/bin/pip install --quiet -c ci/min-versions.txt -e '.[test]'
	touch $@

test-min: .venv-min/.installed
	XLA_FLAGS=--xla_force_host_platform_device_count=8 .venv-min/bin/python -m pytest -q -n 2 tests

clean:
	rm -rf $(VENV) .venv-min runs
