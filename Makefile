# Two commands matter: `make test` (set up + the whole suite) and `make demo` (the main job).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: test demo venv lint bench clean extension test-blender-matrix test-gui gpu-check

# Other Blender lines as the bpy module, each in its own venv (~1 GB, ~1 min to install):
# the render/trade path (probe, pack, tile render, stitch, denoise: tests/blender) runs
# under each. 4.2 LTS (cp311) is part of `make test`; 5.1 (cp313, Python 3.13) is
# `make test-blender-matrix`. The 4.2 wheel lacks OpenImageIO's Python module, which
# Blender 4.2 itself bundles: the venv gets it from PyPI.
BPY42 := .venv-bpy42
BPY51 := .venv-bpy51
PY313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
MATRIX_EXCLUDE := -e '^bpy==' -e '^playwright==' -e '^numpy=='

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

$(BPY42)/.installed: requirements-test.txt
	rm -rf $(BPY42) && $(PY) -m venv $(BPY42)
	grep -v $(MATRIX_EXCLUDE) requirements-test.txt > $(BPY42)/requirements.txt
	$(BPY42)/bin/python -m pip install --quiet -r $(BPY42)/requirements.txt \
		bpy==4.2.23 numpy==2.4.6 OpenImageIO==3.2.2.0
	touch $@

$(BPY51)/.installed: requirements-test.txt
	rm -rf $(BPY51) && $(PY313) -m venv $(BPY51)
	grep -v $(MATRIX_EXCLUDE) requirements-test.txt > $(BPY51)/requirements.txt
	$(BPY51)/bin/python -m pip install --quiet -r $(BPY51)/requirements.txt bpy==5.1.2
	touch $@

venv: $(STAMP) $(BPY42)/.installed

test: $(STAMP) $(BPY42)/.installed
	$(BIN)/python -m pytest -q
	$(BPY42)/bin/python -m pytest -q tests/blender

test-blender-matrix: $(BPY51)/.installed
	$(BPY51)/bin/python -m pytest -q tests/blender

# A real Blender window: Debian trixie's Blender 4.3 (Python 3.13) in a chroot under Xvfb.
# Needs root; the chroot (~2 min, ~1.8 GB the first time) is kept in /var/cache/bitwrk-gui.
# Screenshots, the result and timings go to artifacts/gui/.
test-gui: $(STAMP)
	tests/gui/setup_chroot.sh
	BITWRK_GUI=1 $(BIN)/python -m pytest -q tests/gui

# The main job on one machine: exchange, two sellers, a still and an animation (demo-output/).
demo: $(STAMP)
	$(BIN)/python -m demo.run

lint: $(STAMP)
	$(BIN)/python -m ruff check bitwrk service tests bench blender operators panels tools demo __init__.py
	$(BIN)/python -m mypy
	$(BIN)/python -m tools.mypy_extension

# The Blender extension zips (one per platform, wheels bundled) in dist/, validated.
extension: $(STAMP)
	$(BIN)/python tools/build_extension.py

bench: $(STAMP)
	$(BIN)/python -m bench

# The GPU check (docs/seller.md): devices, the bench tile on OptiX, CUDA and the CPU, times
# and pixel differences. Needs only a Python with bpy and numpy, so no venv is built: on a
# GPU machine run `make gpu-check GPU_PY=/path/to/python` (bpy via PYTHONPATH if need be).
GPU_PY ?= $(BIN)/python
gpu-check:
	$(GPU_PY) tools/gpu_check.py

clean:
	rm -rf $(VENV) $(BPY42) $(BPY51) .pytest_cache .mypy_cache .ruff_cache
