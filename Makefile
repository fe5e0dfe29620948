# Two commands do all setup on a fresh machine: `make demo` and `make test`.
# Optional runtimes are extras: `make setup EXTRAS=executorch` adds ExecuTorch,
# `make test-executorch` installs it and runs the tests that need it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?=
comma := ,
# The stamp is rebuilt (venv re-synced) whenever what it was built from changes;
# each set of extras has its own.
STAMP := $(VENV)/.lwprof-installed$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))

.PHONY: setup demo test test-executorch clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev$(if $(EXTRAS),$(comma)$(EXTRAS))]'
	@touch $(STAMP)

demo: setup
	$(BIN)/lwprof profile mobilenetv3 --device cpu

test: setup
	$(BIN)/python -m pytest

test-executorch:
	$(MAKE) setup EXTRAS=executorch
	$(BIN)/python -m pytest -m executorch

clean:
	rm -rf $(VENV) build *.egg-info
