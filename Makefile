# Two commands on a fresh machine: `make demo` and `make test`. Everything else they need, they install.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen --extra local --extra dev-stack
# Python caches the bytecode of what it imports, unless the environment says not to (this machine's does): every
# process of a test or a demo would compile the agent framework, the SDKs and our code again, about 2.5 s each.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test lint typecheck demo dev clean histories bench

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --extra local --extra dev-stack
	@touch $@

lint: install
	$(RUN) ruff check .

typecheck: install
	$(RUN) mypy

test: lint typecheck
	$(RUN) pytest -q

demo: install
	$(RUN) tollgate demo

dev: install
	$(RUN) tollgate dev

# Figures, not tests: what durability and the gates cost against the model's own time (docs/benchmarks.md).
bench: install
	$(RUN) python -m benchmarks

# Re-record the workflow histories the replay tests replay, on purpose (see tests/record_histories.py).
histories: install
	$(RUN) python -m tests.record_histories

clean:
	rm -rf .venv .tollgate .mypy_cache .ruff_cache .pytest_cache
