"""Smoke test of the verification benchmark: it runs end to end and prints its rows.

No assertion on the figures: they depend on the machine and what else runs on it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.blender.conftest import ROOT, needs_bpy

pytestmark = [needs_bpy, pytest.mark.slow]


def test_verify_bench_quick_runs_and_prints_its_rows() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.verify", "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "check cost, default policy" in proc.stdout
    assert "% of job CPU" in proc.stdout
