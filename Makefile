# Parley developer commands.  Every target does its own set-up: a fresh
# machine needs only Python 3.11, a C compiler and make.
#
#   make serve      create .venv if missing, install, run `parley serve`
#   make test       install dev extras, run ruff, mypy and the test suite
#   make autobahn   RFC 6455 conformance (Autobahn|Testsuite) against the gateway
#   make debug      rebuild core_ext with Cython annotate + linetrace
#   make bench      pytest-benchmark microbenchmarks (both implementations)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Re-install only when what the build depends on changed (idempotent, fast).
BUILD_INPUTS := pyproject.toml setup.py $(wildcard core_ext/*.pyx core_ext/*.pxd core_ext/*_py.py)

.PHONY: serve test lint typecheck pytest autobahn debug bench bench-check bench-smoke peers fuzz clean install dev

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(VENV)/bin/activate $(BUILD_INPUTS)
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

serve: $(VENV)/.installed
	$(VENV)/bin/parley serve $(ARGS)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

# Node's `ws` peer for the benchmark comparisons (its smoke test skips
# without node).
NODE := $(shell command -v node 2>/dev/null)
PEERS := $(if $(NODE),bench/peers/node_modules/.installed)

peers: bench/peers/node_modules/.installed
bench/peers/node_modules/.installed: bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

pytest: $(VENV)/.dev-installed $(PEERS)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

debug: $(VENV)/.dev-installed
	CORE_EXT_DEBUG=1 $(PIP) install --quiet --no-build-isolation -e .
	@echo "annotated HTML: core_ext/*.html"

bench: $(VENV)/.dev-installed
	$(PY) -m pytest bench/micro --benchmark-only -p no:cacheprovider $(PYTEST_ARGS)

# CI: every microbenchmark once (so none rots) and the compiled/Python ratio
# targets, both implementations measured in the same run.
bench-smoke: $(VENV)/.dev-installed peers
	$(PY) -m pytest tests/bench -q -p no:cacheprovider $(PYTEST_ARGS)

bench-check: $(VENV)/.dev-installed
	$(PY) -m pytest bench/micro --benchmark-disable -q -s -p no:cacheprovider

clean:
	rm -rf build $(VENV) core_ext/*.so core_ext/*.c core_ext/*.html .pytest_cache .mypy_cache

# RFC 6455 conformance: Autobahn|Testsuite (fuzzingclient, cases 1-10) against
# `parley gateway --echo`.  Needs pyenv's Python 2.7.18; fails loudly without it.
autobahn: $(VENV)/.installed
	$(PY) compliance/autobahn.py

# Atheris fuzzing of the frame parser / WebSocket connection and the command
# envelope codecs.  FUZZ_SECONDS per target (CI runs a short pass).
fuzz: $(VENV)/.dev-installed
	$(PY) -m pip install --quiet atheris
	$(PY) fuzzing/fuzz_frames.py -max_total_time=$${FUZZ_SECONDS:-300} -print_final_stats=1
	$(PY) fuzzing/fuzz_envelope.py -max_total_time=$${FUZZ_SECONDS:-300} -print_final_stats=1
