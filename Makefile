# spicenet: `make test` and `make demo` each do the whole set-up on a fresh Debian machine:
# ngspice + libngspice + chromium (apt, when missing), a venv with the CPU build of torch, the package, the sky130 models and
# the FID feature networks (trained once from ../shared/data, cached in ~/.cache/spicenet/features).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spicenet-setup
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TORCH  := torch==2.13.0
export OMP_NUM_THREADS ?= 1

.PHONY: setup system-deps test test-slow demo demo-quick bench docs clean

setup: $(STAMP)

# chromium: the report test renders a run's HTML page headless
system-deps:
	@if ! command -v ngspice >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libngspice.so\b' \
			|| ! command -v chromium >/dev/null 2>&1; then \
		echo "installing ngspice, libngspice0, libngspice0-dev, chromium with apt" >&2; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			ngspice libngspice0 libngspice0-dev chromium >&2; \
	fi

$(STAMP): setup.cfg pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test,docs]'
	$(BIN)/spicenet pdk install sky130 --json
	$(BIN)/spicenet metrics train-features mnist --json
	$(BIN)/spicenet metrics train-features fashion --json
	touch $@

# the modules behind spicenet.__all__ (the engine, the store, sweeps, surrogate files, the family registry and the
# families' exports): type-checked with --strict on top of the whole-package run
PUBLIC_API = spicenet/__init__.py spicenet/store.py spicenet/spice/engine.py spicenet/sweep.py spicenet/surrogate.py \
	spicenet/families.py spicenet/cells/rng/pbit.py spicenet/cells/resistive/network.py spicenet/cells/oscillator/phase.py

test: setup
	$(BIN)/ruff check spicenet tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/mypy --strict $(PUBLIC_API)
	$(BIN)/python -m pytest -q -ra

test-slow: setup
	$(BIN)/python -m pytest -q -ra -m slow

demo: setup
	$(BIN)/spicenet demo

demo-quick: setup
	$(BIN)/spicenet demo --quick

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/gibbs.py

# the documentation site (README, API reference from the docstrings, notebooks) into build/site; warnings are errors
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info demo-out .pytest_cache
