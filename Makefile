# Both entry points set themselves up: a fresh machine needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS := interop/js
JS_STAMP := $(JS)/node_modules/.stamp
CHROMIUM ?= /usr/bin/chromium
HOME_DEMO ?= .demo-home

.PHONY: demo test lint unit bench clean native

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	# libp2p pulls in trio-typing, whose old trio-stubs hide trio's own (newer) types from
	# mypy; the stubs are type information only, nothing imports them at run time.
	rm -rf $(VENV)/lib/python*/site-packages/trio-stubs
	touch $(STAMP)

# The interop tests drive a js-libp2p client (tests/test_interop_js.py). npm installs it
# from the lock file; a machine without node gets Debian's nodejs and npm when we are root.
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q nodejs npm; \
		else echo "node and npm are missing: install them (apt-get install nodejs npm)" >&2; \
			exit 1; fi; \
	fi
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

# The browser tests drive Debian's chromium (playwright with executable_path): installed
# here when we are root, since nothing may be downloaded when the tests run.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	else echo "chromium is missing: install it (apt-get install chromium)" >&2; exit 1; fi

# The simulator's hot modules compiled with mypyc (simulation/native.py); with no C
# compiler the simulator runs as plain Python, slower. gcc comes from Debian when root.
NATIVE := simulation/native.json
NATIVE_SOURCES := simulation/engine.py simulation/network.py simulation/gossip.py simulation/native.py
$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	@if ! command -v cc >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && apt-get install -y -q gcc; fi
	$(BIN)/python simulation/native.py build

native: $(NATIVE)

demo: $(STAMP)
	$(BIN)/python -m node.demo --home $(HOME_DEMO)

test: lint unit

lint: $(STAMP) $(NATIVE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy node protocol storage bootstrap simulation bench tests

unit: $(STAMP) $(NATIVE) $(JS_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(NATIVE)
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/gossip.py
	$(BIN)/python bench/swarm.py
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/feed.py
	$(BIN)/python bench/webrtc.py

# The demo home goes only if the demo made it (node/demo.py writes the marker file).
clean:
	$(BIN)/python simulation/native.py clean || true
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(JS)/node_modules
	@if [ -f $(HOME_DEMO)/.toktok-demo ]; then rm -rf $(HOME_DEMO); \
	elif [ -e $(HOME_DEMO) ]; then echo "kept $(HOME_DEMO): it has no .toktok-demo file"; fi
