"""Importing every module of bitwrk/ pulls in neither bpy nor service (docs/architecture.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: a None entry in sys.modules makes `import bpy` (or service)
# raise ImportError, so any module that imports them at load time fails loudly.
SCRIPT = """
import importlib, pkgutil, sys
sys.modules["bpy"] = None
sys.modules["service"] = None
import bitwrk
names = ["bitwrk"]
def fail(name):
    raise SystemExit(f"could not import {name}: {sys.exc_info()[1]!r}")
for info in pkgutil.walk_packages(bitwrk.__path__, "bitwrk.", onerror=fail):
    importlib.import_module(info.name)
    names.append(info.name)
print("\\n".join(names))
"""


def test_every_bitwrk_module_imports_without_bpy_or_service() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr + result.stdout
    imported = set(result.stdout.split())
    assert {"bitwrk", "bitwrk.keys", "bitwrk.money", "bitwrk.protocol", "bitwrk.errors"} <= imported


def test_only_keys_imports_coincurve() -> None:
    importer = re.compile(r"^\s*(?:import|from)\s+coincurve\b", re.MULTILINE)
    for path in (ROOT / "bitwrk").rglob("*.py"):
        if path != ROOT / "bitwrk" / "keys.py":
            assert not importer.search(path.read_text(encoding="utf-8")), path
