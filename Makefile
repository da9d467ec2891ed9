# Both entry points set themselves up: a fresh machine needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOME_DEMO ?= .demo-home

.PHONY: demo test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m node.demo --home $(HOME_DEMO)

test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy node protocol storage bootstrap simulation bench tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/ingest.py

# The demo home goes only if the demo made it (node/demo.py writes the marker file).
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	@if [ -f $(HOME_DEMO)/.toktok-demo ]; then rm -rf $(HOME_DEMO); \
	elif [ -e $(HOME_DEMO) ]; then echo "kept $(HOME_DEMO): it has no .toktok-demo file"; fi
