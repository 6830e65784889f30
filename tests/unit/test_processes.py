"""The process helpers tests, the demo and the benchmarks share (tools/processes.py),
with real child processes."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tools.processes import Proc, free_port, proc_stat

# A child that starts a grandchild in a session of its own (as render workers are), prints
# its pid and waits; SIGTERM to the child's group does not reach the grandchild.
PARENT = """
import subprocess, sys, time
sub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                       start_new_session=True)
print("grandchild", sub.pid, flush=True)
time.sleep(600)
"""


def gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while proc_stat(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_stop_kills_the_child_and_what_it_started_in_other_sessions(tmp_path: Path) -> None:
    proc = Proc("parent", [sys.executable, "-c", PARENT], {}, tmp_path / "parent.log")
    try:
        grandchild = int(proc.wait_for(r"grandchild (\d+)", timeout=60).group(1))
        assert proc_stat(grandchild) is not None
        code = proc.stop(signal.SIGTERM, grace=30)
    finally:
        proc.stop()
    assert code == -signal.SIGTERM
    assert not proc.alive()
    assert gone(grandchild)
    assert proc.stop() == code  # a second stop only reports


def test_wait_for_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    proc = Proc("short", argv, {}, tmp_path / "short.log")
    try:
        with pytest.raises(RuntimeError, match=r"short exited \(3\):\nboom"):
            proc.wait_for("never printed", timeout=60)
    finally:
        proc.stop()


def test_pipe_keeps_stdout_apart_from_the_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    proc = Proc("piped", argv, {}, tmp_path / "piped.log", pipe=True)
    try:
        assert proc.proc.stdout is not None
        assert proc.proc.stdout.read() == "out\n"
        proc.proc.wait(60)
    finally:
        proc.stop()
    assert proc.output() == "err\n"
