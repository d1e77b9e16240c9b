# One task runner: the README and CI call these targets verbatim.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# uv, in order: UV=... given by the caller; `uv` on PATH; `python3 -m uv`; else a private copy
# bootstrapped into .tools/uv-venv by `make setup` (PEP 668 systems refuse pip installs into the
# distribution's python3, so uv never goes there).
UV_VERSION := 0.13.8
UV_VENV := .tools/uv-venv
ifeq ($(origin UV),undefined)
UV := $(shell if command -v uv >/dev/null 2>&1; then echo uv; \
  elif python3 -m uv --version >/dev/null 2>&1; then echo 'python3 -m uv'; \
  else echo '$(UV_VENV)/bin/uv'; fi)
endif
PYTEST_ARGS ?=
# 4 xdist workers on 2 cores: the suite spends about 40% of its time waiting on real servers
# and timers, which more workers overlap (idle: 3m07 against 4m51 with 2; with two CPU hogs:
# 5m13 against 6-7.4 min). worksteal keeps the long testkit examples from ending the run alone.
PYTEST_WORKERS ?= 4

.PHONY: setup node-deps run test lint typecheck pytest bench bench-quick fmt docs interop

## setup: the locked environment into .venv (uv from PATH, or bootstrapped into .tools/uv-venv)
setup:
	@if [ "$(UV)" = "$(UV_VENV)/bin/uv" ] && ! $(UV_VENV)/bin/uv --version >/dev/null 2>&1; then \
	  if ! command -v python3 >/dev/null 2>&1; then \
	    echo "setup: python3 not found; install Python 3.11 (Debian/Ubuntu: sudo apt install python3 python3-venv)" >&2; exit 1; fi; \
	  echo "setup: uv not found; installing uv $(UV_VERSION) into $(UV_VENV) (a private venv; nothing else is touched)"; \
	  rm -rf $(UV_VENV); \
	  if ! python3 -m venv $(UV_VENV) >/dev/null 2>&1; then rm -rf $(UV_VENV); \
	    echo "setup: python3 cannot create a virtual environment (the venv module or ensurepip is missing)." >&2; \
	    echo "setup: install it with: sudo apt install python3-venv  (or install uv: https://docs.astral.sh/uv/), then run make again" >&2; exit 1; fi; \
	  $(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)' \
	    || { rm -rf $(UV_VENV); echo "setup: could not install uv $(UV_VERSION) from PyPI into $(UV_VENV)" >&2; exit 1; }; \
	fi
	@$(UV) sync --frozen --quiet

## run: set up, then probe the seeds' matrix on the embedded emulator (no credentials, no network)
run: setup
	@$(UV) run --frozen callproof run

## test: set up, then lint, type-check and run the whole test suite
test: setup node-deps lint typecheck pytest

## node-deps: the unmodified Node clients the tests drive (tests/node, locked; npm ci)
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  test -d tests/node/node_modules || npm ci --prefix tests/node --no-audit --no-fund --loglevel=error; \
	else echo "node-deps: npm not found; the Node client tests will say so"; fi

## interop: only the interop suite (real Node and Python clients against the emulator; pinned).
## LiteLLM (bench group) goes into .venv-bench, as for `make bench`, never into .venv.
interop: setup node-deps
	@test -x .venv-bench/bin/python || UV_PROJECT_ENVIRONMENT=.venv-bench $(UV) sync --frozen --group bench --quiet
	$(UV) run --frozen pytest -q -p no:cacheprovider -m interop tests/interop

lint:
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen ruff format --check src tests bench

typecheck:
	$(UV) run --frozen mypy

pytest:
	$(UV) run --frozen pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

fmt: setup
	$(UV) run --frozen ruff format src tests bench
	$(UV) run --frozen ruff check --fix src tests bench

## bench: every benchmark in bench/ (figures are ratios against a baseline in the same run).
## aimock comes from npm (bench/aimock, locked); LiteLLM (pinned, hashed in uv.lock) goes into
## .venv-bench so the project's environment never holds it.
bench: setup
	@test -d bench/aimock/node_modules || npm ci --prefix bench/aimock --no-audit --no-fund
	$(UV) run --frozen python bench/emulator.py
	$(UV) run --frozen python bench/client.py
	$(UV) run --frozen python bench/probe.py
	$(UV) run --frozen python bench/router_load.py
	UV_PROJECT_ENVIRONMENT=.venv-bench $(UV) run --frozen --group bench python bench/resilience.py
	$(UV) run --frozen python bench/scale.py
	$(UV) run --frozen python bench/gateway.py

## bench-quick: a smoke run of every benchmark (small sizes; figures are not for the README)
bench-quick: setup
	$(UV) run --frozen python bench/emulator.py --duration 1 --levels 1,64 --no-aimock
	$(UV) run --frozen python bench/client.py --events 2000 --repeat 1 --calls 5
	$(UV) run --frozen python bench/probe.py --quick
	$(UV) run --frozen python bench/scale.py --quick
	$(UV) run --frozen python bench/router_load.py --quick
	$(UV) run --frozen python bench/gateway.py --quick

## docs: regenerate the CLI reference from --help
docs: setup
	$(UV) run --frozen python -m callproof.docgen > docs/cli.md
