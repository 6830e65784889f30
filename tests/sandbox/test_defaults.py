"""The sandbox is on by default in ``python -m bitwrk.seller`` (a real seller process), and
selling without one needs the explicit opt-out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.blender.conftest import needs_bpy
from tests.e2e.conftest import ServerProcess

pytestmark = [needs_bpy, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "exchange").start()
    yield server
    server.close()


def seller_env(tmp_path: Path, path: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    if path is not None:
        env["PATH"] = path
    return env


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_cli_seller_runs_its_workers_in_bubblewrap(exchange: ServerProcess,
                                                      tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bitwrk.seller", "--exchange", exchange.url, "--cores", "1",
            "--min-price", "10", "--classes", "512M", "--status-port", "-1"]
    log = tmp_path / "seller.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=seller_env(tmp_path), cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"seller \S+ on http", log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "sandbox bwrap" in log.read_text()
        workers = [cmdline(c) for c in children(proc.pid)]
        assert workers and all(Path(w[0]).name == "bwrap" for w in workers), workers
        assert all("--unshare-all" in w and "--die-with-parent" in w for w in workers)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]


def test_without_a_sandbox_the_cli_refuses_unless_opted_in(exchange: ServerProcess,
                                                          tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bitwrk.seller", "--exchange", exchange.url, "--cores", "1",
            "--min-price", "10", "--status-port", "-1"]
    no_bwrap = str(tmp_path / "empty-path")  # bubblewrap is looked up on PATH
    refused = subprocess.run(argv, env=seller_env(tmp_path, no_bwrap), cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "not selling" in refused.stderr and "--unsandboxed" in refused.stderr
    assert "seller" not in refused.stdout  # never bid
    proc = subprocess.Popen([*argv, "--unsandboxed"], env=seller_env(tmp_path, no_bwrap),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "sandbox none" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert "WARNING: selling without a sandbox" in err
