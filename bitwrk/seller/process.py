"""One render worker process speaking JSON lines (asyncio; never imports bpy).

Started by :class:`~bitwrk.seller.pool.WorkerPool`, usually inside the OS sandbox of
:mod:`bitwrk.seller.sandbox`; ``home`` is its private host folder (stderr log, the job
and output folders the sandbox shows it), removed when the process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ..render.errors import RenderError, RenderTimeout, WorkerCrashed

_SIGNALS = {int(sig) for sig in signal.Signals}
START_NOISE_LINES = 200  # lines before the ready line tolerated (a binary's banner)
PASS_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")


def worker_env(home: Path, private: bool = True) -> dict[str, str]:
    """A clean environment: a few harmless variables, with ``private`` everything else
    (HOME, TMPDIR, Blender's user and cache dirs) in folders under ``home``."""
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    if not private:
        return env
    dirs = {"HOME": "", "TMPDIR": "tmp", "BLENDER_USER_RESOURCES": "blender",
            "XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "config", "XDG_DATA_HOME": "data"}
    for name, sub in dirs.items():
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    return env


class WorkerProcess:
    """One ``bitwrk.seller.worker`` child speaking JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, home: Path, ready: dict[str, Any]):
        self.proc = proc
        self.home = home
        self.ready = ready
        self.blend: tuple[str, int, int] | None = None
        self.owner: str | None = None  # whose file it holds (a buyer), when known
        self.sandboxed = False  # paths in requests are the sandbox's, not the host's
        self._tail = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def inner_pid(self) -> int:
        """The worker's own host process id: under bwrap, the innermost child (Linux)."""
        pid = self.pid
        for _ in range(8):
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                break
            if not children:
                break
            pid = int(children[-1])
        return pid

    @classmethod
    async def start(cls, argv: list[str], timeout: float, home: Path,
                    env: dict[str, str]) -> WorkerProcess:
        """Run ``argv`` (already wrapped in its sandbox) with ``home`` as its folder."""
        with open(home / "stderr.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env=env, cwd=home, start_new_session=True)
        worker = cls(proc, home, {})
        try:
            line = await asyncio.wait_for(worker._ready_line(), timeout)
        except TimeoutError:
            await worker.kill()
            raise RenderError(f"worker did not start within {timeout:.0f} s") from None
        except asyncio.CancelledError:
            await worker.kill()
            raise
        if not line:
            await worker.kill()
            raise WorkerCrashed(f"worker exited during start-up ({worker._exit_text()}; "
                                "an address-space limit under ~2 GiB crashes bpy): "
                                f"{worker.stderr_tail()}", returncode=proc.returncode)
        worker.ready = json.loads(line)
        return worker

    async def _ready_line(self) -> bytes:
        """The first JSON line; a Blender binary prints its banner on stdout before it."""
        for _ in range(START_NOISE_LINES):
            line = await self._readline()
            if not line or line.lstrip().startswith(b"{"):
                return line
        return b""

    async def _readline(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.readline()

    def stderr_tail(self, size: int = 1500) -> str:
        """The end of the worker's stderr (Blender's and Python's messages)."""
        try:
            data = (self.home / "stderr.log").read_bytes()[-size:]
        except OSError:
            return self._tail[-size:]
        return data.decode(errors="replace").strip()

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request, wait for its answer; kill the worker on timeout or death."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self._readline(), timeout)
        except TimeoutError:
            await self.kill()
            raise RenderTimeout(f"render ran past its wall-time limit of {timeout:g} s; "
                                "worker killed", limit=timeout) from None
        except (BrokenPipeError, ConnectionResetError):
            line = b""
        if not line:
            await self.kill()
            raise WorkerCrashed(f"worker {self.pid} died while rendering "
                                f"({self._exit_text()}): {self.stderr_tail(600)}",
                                returncode=self.proc.returncode)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            await self.kill()
            raise RenderError(f"worker answered nonsense: {line[:200]!r}")
        return answer

    def _exit_text(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        if self.sandboxed and code is not None and code - 128 in _SIGNALS:
            # bwrap, the sandbox's init, reports a child's death by signal N as 128 + N
            return f"killed by {signal.Signals(code - 128).name} in its sandbox"
        return f"exit status {code}"

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if hasattr(os, "killpg"):  # the worker leads its own process group
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
        await self.proc.wait()
        tail = self.stderr_tail()  # read before the private dir goes
        shutil.rmtree(self.home, ignore_errors=True)
        self._tail = tail

    async def close(self, grace: float = 3.0) -> None:
        """Let the worker exit on end of input; kill it if it does not."""
        if self.proc.stdin is not None and self.proc.returncode is None:
            self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
        await self.kill()
