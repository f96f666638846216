# Two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit protos protos-check protos-image bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/liaison demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The console's browser test needs Debian's chromium; installed when we may (root), else that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the console's browser test will be skipped"

# Fault tests kill and restart servers on timers: they run after the rest, one at a time,
# so that the parallel load of the other tests does not stretch their timings.
test: lint typecheck browser protos-check
	$(BIN)/pytest -n auto --ignore=tests/faults
	$(BIN)/pytest tests/faults

unit: $(STAMP)
	$(BIN)/pytest tests/unit -n auto

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

# The wire contract: buf's STANDARD lint, and no breaking change against the committed image.
BUF_IMAGE := protos/liaison.v1.binpb

protos-check: $(STAMP)
	$(BIN)/buf lint protos
	$(BIN)/buf breaking protos --against $(BUF_IMAGE)

# Only after a deliberate change to protos/ (read what protos-check says first).
protos-image: $(STAMP)
	$(BIN)/buf build protos -o $(BUF_IMAGE)

bench: $(STAMP)
	$(BIN)/liaison bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
