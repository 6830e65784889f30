# Two commands matter: `make test` (set up + the whole suite) and `make demo` (the main job).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: test demo venv lint bench clean extension

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements-test.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	@# The browser tests drive Debian's chromium (Playwright's own download is not reachable).
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi
	@# Sellers run every render worker inside bubblewrap (tests prove the sandbox holds).
	@if ! command -v bwrap >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	fi
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The main job on one machine: exchange, two sellers, a still and an animation (demo-output/).
demo: $(STAMP)
	$(BIN)/python -m demo.run

lint: $(STAMP)
	$(BIN)/python -m ruff check bitwrk service tests bench engine operators panels tools demo __init__.py
	$(BIN)/python -m mypy

# The Blender extension zips (one per platform, wheels bundled) in dist/, validated.
extension: $(STAMP)
	$(BIN)/python tools/build_extension.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
