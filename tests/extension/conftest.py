"""The extension zip, built once per session with ``tools/build_extension.py`` (linux-x64
wheels only; ``wheels/`` caches them between runs), and bpy-process helpers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HAVE_BPY = importlib.util.find_spec("bpy") is not None


def scratch_env(base: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BLENDER_USER_RESOURCES": str(base / "blender-user"),
                "XDG_CACHE_HOME": str(base / "cache"), "XDG_DATA_HOME": str(base / "data"),
                **extra})
    env.pop("PYTHONPATH", None)  # the extension must stand on its own wheels
    return env


def run_report(args: list[str], env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """Run a bpy script that prints ``REPORT {json}``; its report."""
    done = subprocess.run([sys.executable, *args], env=env, cwd=HERE, capture_output=True,
                          text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-4000:]
    report: dict[str, Any] = json.loads(lines[-1][len("REPORT "):])
    return report


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_BPY:
        pytest.skip("the bpy module is not installed")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, str(ROOT / "tools/build_extension.py"),
                           "--platforms", "linux-x64", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    zips = sorted(out.glob("bitwrk-*.zip"))
    assert len(zips) == 1, zips
    return zips[0]
