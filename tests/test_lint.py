"""ruff and mypy (strict) run as part of the tests, as the house style asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff() -> None:
    dirs = [d for d in ("bitwrk", "service", "tests", "bench", "engine", "operators", "panels",
                        "tools", "demo", "__init__.py") if (ROOT / d).exists()]
    result = run("ruff", "check", *dirs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = run("mypy")  # files and strictness from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
