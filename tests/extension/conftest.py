"""The extension zip, built once per session with ``tools/build_extension.py`` (linux-x64
wheels only; ``wheels/`` caches them between runs), bpy-process helpers, and a real local
exchange with two ``python -m bitwrk.seller`` processes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HAVE_BPY = importlib.util.find_spec("bpy") is not None


def scratch_env(base: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BLENDER_USER_RESOURCES": str(base / "blender-user"),
                "XDG_CACHE_HOME": str(base / "cache"), "XDG_DATA_HOME": str(base / "data"),
                "BITWRK_SELL_HOST": "127.0.0.1",  # sellers stay on loopback in tests
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


def bpy_run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, *args], env={**env, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture
def exchange_with_sellers(tmp_path: Path) -> Iterator[str]:
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    procs = []
    for i in range(2):
        base = tmp_path / f"seller{i}"
        base.mkdir()
        env = {**scratch_env(base), "PYTHONPATH": str(ROOT)}
        log = open(base / "out.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "bitwrk.seller", "--exchange", exchange.url, "--cpus",
             str(i), "--min-price", str(10 + i), "--classes", "512M"], env=env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log, base))
    try:
        for _proc, _log, base in procs:
            wait_for(base / "out.log", r"seller \S+ on http")
        yield exchange.url
    finally:
        for proc, log, _base in procs:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
        exchange.close()


def wait_for(path: Path, pattern: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(path.read_text()[-2000:])


def fund_buyer(exchange_url: str, db: Path, env: dict[str, str]) -> None:
    run = {**env, "PYTHONPATH": str(ROOT)}
    account = subprocess.run([sys.executable, "-m", "bitwrk", "account"], env=run, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    address = re.search(r"address\s+(\S+)", account.stdout).group(1)  # type: ignore[union-attr]
    credit = subprocess.run([sys.executable, "-m", "service", "credit", address, "1000000",
                             "--exchange", exchange_url, "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert credit.returncode == 0, credit.stderr
