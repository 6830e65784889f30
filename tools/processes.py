"""Child processes and loopback ports for the tests, the demo and the benchmarks.

Every child runs in a session (process group) of its own, its output in a log file, so one
signal reaches everything it started and a crash leaves a log to read. Render workers lead
sessions of their own; :meth:`Proc.signal` notes every process below the child first so
:meth:`Proc.stop` can kill those too (by pid *and* start time, never a recycled pid).
Linux only: the process tree comes from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
TERM = signal.SIGTERM  # Proc.signal hides the module inside the class body


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the child binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of a live, non-zombie process; None otherwise."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), fields[19])


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root`` (pid -> start time), in its group or not."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = proc_stat(int(name))
            if info is not None:
                children.setdefault(info[0], []).append(int(name))
                starts[int(name)] = info[1]
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found and pid in starts:
            found[pid] = starts[pid]
            todo += children.get(pid, [])
    return found


def kill_exact(pids: dict[int, str]) -> None:
    """SIGKILL each pid that is still the process seen (same start time)."""
    for pid, start in pids.items():
        info = proc_stat(pid)
        if info is not None and info[1] == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class Proc:
    """A child in its own session (process group), its output in a log file or a pipe.

    With ``pipe`` its stdout is a pipe (``proc.stdout``) and only stderr goes to the log.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 pipe: bool = False, cwd: Path = REPO) -> None:
        self.name = name
        self.log_path = log
        self._log: IO[str] = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if pipe else self._log,
                                     stderr=self._log if pipe else subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.seen: dict[int, str] = {}
        self.stopped = False
        self.signalled = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` in the log; RuntimeError (with the log's tail)
        when the child exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found:
                return found
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                                   f"{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {pattern!r} after {timeout:.0f} s:\n"
                                   f"{self.output()[-2000:]}")
            time.sleep(0.1)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the group (once), noting every process below it first."""
        if self.stopped or self.signalled or not self.alive():
            return
        self.signalled = True
        self.seen.update(descendants(self.pid))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, sig: int = TERM, grace: float = 10.0) -> int | None:
        """``sig`` to the group, SIGKILL after ``grace``; then everything it started.
        Always reaps the child and closes the log; a second call only returns the status."""
        if self.stopped:
            return self.proc.returncode
        try:
            if self.alive():
                self.signal(sig)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self.proc.wait(10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # the rest of its group
            kill_exact(self.seen)  # children in sessions of their own (render workers)
            return self.proc.returncode
        finally:
            self.stopped = True
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()
