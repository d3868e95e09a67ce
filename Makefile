# One command installs what the tests need and runs the whole suite: `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: test install lint format bench clean

test: install lint
	$(BIN)/python -m pytest

# torch (CPU build) is installed so the framework startup hook is tested against the real
# library; on these machines pip takes it from the local wheel directory.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q "torch==2.13.0"
	touch $(STAMP)

# configurable-http-proxy, which the hub runs, comes from npm.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/allocator.py --json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
