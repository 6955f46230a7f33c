# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
# The CPU torch wheel is installed FIRST and pinned, so nothing pulls the CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mptc-installed
TORCH  ?= torch==2.13.0
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/mptc demo --out runs/demo

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
