# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
# The CPU torch wheel is installed FIRST and pinned, so nothing pulls the CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mptc-installed
TORCH  ?= torch==2.13.0
PIP    := $(PY) -m pip install -q --disable-pip-version-check

ARM_SETUP := scripts/setup_arm_emulator.sh
OUTSIDE_STAMP := $(VENV)/.mptc-outside

.PHONY: setup arm-emulator demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The test suite's outside-world exporters (pyproject's `outside` extra: a real Brevitas
# QONNX/QCDQ export), without their pins, which would downgrade the venv's setuptools.
$(OUTSIDE_STAMP): $(STAMP) pyproject.toml
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['outside']))" \
		| xargs $(PIP) --no-deps
	touch $(OUTSIDE_STAMP)

# MPT-1/1 tickets (binary activations) at three sparsities: the report shows the packed
# XNOR-popcount kernels, the sign-split sparse kernel and the dense path, each where it is chosen.
demo: setup
	$(VENV)/bin/mptc sweep --binary-act --sparsity 0.5,0.9,0.95 -o runs/demo

# aarch64 board emulation (qemu-user + runtime-only TVM in .arm/) for tests/deploy and
# `mptc profile --emulate`; checks its own stamp and returns at once when already set up.
arm-emulator: $(STAMP)
	HOST_PY=$(PY) $(ARM_SETUP)

# Lint, format and type checks first: they take seconds, the suite minutes.
test: setup arm-emulator $(OUTSIDE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .arm runs .pytest_cache .hypothesis .mypy_cache .ruff_cache
