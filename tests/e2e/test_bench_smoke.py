"""Smoke test of the exchange benchmark: it runs end to end and prints its table.

No timing assertions: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_exchange_bench_quick_runs_and_prints_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.exchange", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BitWrk benchmark results" in proc.stdout
    assert "accepted bids/s" in proc.stdout
    assert "did not run" not in proc.stdout


def test_bench_runs_as_a_package_without_path_edits() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--only" in proc.stdout and "swarm" in proc.stdout
    edits = [p.name for p in (ROOT / "bench").glob("*.py") if "sys.path" in p.read_text()]
    assert not edits, f"bench scripts that edit sys.path: {edits}"
