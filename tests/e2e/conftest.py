"""End-to-end fixtures: the exchange as a real ``python -m service`` process on loopback.

:class:`ServerProcess` starts the server on a free port with a temporary database, waits until
``/api/v1/info`` answers, and can be killed (SIGKILL), stopped (SIGTERM) and restarted on the
same database and port. The ``server`` / ``server_factory`` fixtures always kill whatever they
started and assert that no server process is left behind.

A restart can be prepared: ``prepare_restart()`` starts the next process ahead of time and holds
it after its imports (seconds on a loaded machine), before it opens the database or the port;
``restart_prepared()`` lets it go on. Tests whose deadlines are scaled down to seconds use it, so
that interpreter start-up does not count as downtime (real deadlines are minutes long).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitwrk.keys import PrivateKey
from tools.processes import free_port

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_SCALE = 0.05  # bids live 6 s, establishing 3 s, transmitting 6 s, review 45 s
# ``python -m service`` with its imports done first, then held until a line arrives on stdin.
HELD_SERVICE = ("import sys\n"
                "import service.__main__ as service_main\n"
                "sys.stdin.readline()\n"
                "sys.exit(service_main.main(sys.argv[1:]))\n")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class ServerError(RuntimeError):
    """The server process did not come up (its log tail is in the message)."""


class ServerProcess:
    """One exchange process: ``start()``, ``kill()`` (SIGKILL), ``stop()`` (SIGTERM),
    ``restart()``; the ``*_async`` variants don't block the event loop while waiting."""

    def __init__(
        self,
        workdir: Path,
        *,
        timeout_scale: float = DEFAULT_TIMEOUT_SCALE,
        network: str = "regtest",
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = 15.0,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = workdir / "exchange.sqlite3"
        self.key_path = workdir / "operator.wif"
        self.log_path = workdir / "server.log"
        self.timeout_scale = timeout_scale
        self.network = network
        self.host = host
        self.port = port
        self.extra_args = extra_args
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.held: subprocess.Popen[bytes] | None = None  # a prepared restart
        self.pids: list[int] = []  # every process this object started
        self.starts = 0
        self.info: dict[str, Any] = {}

    # -- what tests use ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.port is not None, "not started yet"
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def operator_key(self) -> PrivateKey:
        """The operator's key, created by the server beside the db on its first start."""
        return PrivateKey.from_wif(self.key_path.read_text().strip())

    def start(self) -> ServerProcess:
        """Start on ``port`` (a free one if None) and wait until ``/api/v1/info`` answers."""
        chosen = self.port is None
        for attempt in range(3):
            if chosen:
                self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_ready()
                return self
            except ServerError as exc:
                # Another process may have taken the port between probe and bind: try another.
                self.kill()
                port_taken = "address already in use" in str(exc).lower()
                if not (chosen and port_taken) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def start_async(self) -> ServerProcess:
        return await asyncio.to_thread(self.start)

    def kill(self) -> None:
        """SIGKILL, no grace: what a crash or the OOM killer does."""
        self._signal(signal.SIGKILL, wait=5.0)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (aiohttp shuts down cleanly), SIGKILL if it takes longer than ``grace``."""
        if self.running:
            try:
                self._signal(signal.SIGTERM, wait=grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> ServerProcess:
        """Start again on the same db and port (kills a still-running process first)."""
        self.kill()
        self._spawn()
        self._wait_ready()
        return self

    async def restart_async(self) -> ServerProcess:
        """``restart()`` without blocking the event loop (clients keep running meanwhile)."""
        return await asyncio.to_thread(self.restart)

    def prepare_restart(self) -> None:
        """Start the next process now, held after its imports: it touches neither the
        database nor the port until ``restart_prepared()``. The running one is unaffected."""
        assert self.held is None, "a restart is already prepared"
        self.held = self._popen(held=True)

    def restart_prepared(self) -> ServerProcess:
        """Kill the running process (if any), let the prepared one go on (it opens the
        database from here on), and wait until it answers."""
        held, self.held = self.held, None
        assert held is not None and held.stdin is not None, "no restart prepared"
        self.kill()
        self.proc = held
        with contextlib.suppress(BrokenPipeError):  # it died: _wait_ready says why
            held.stdin.write(b"go\n")
            held.stdin.close()
        self._wait_ready()
        return self

    async def restart_prepared_async(self) -> ServerProcess:
        return await asyncio.to_thread(self.restart_prepared)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def close(self) -> None:
        """Kill the process if it runs, and a prepared one (teardown; idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        held, self.held = self.held, None
        if held is not None:
            held.kill()
            held.wait(timeout=5.0)
            if held.stdin is not None:
                held.stdin.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _command(self, held: bool = False) -> list[str]:
        assert self.port is not None
        start = ["-c", HELD_SERVICE] if held else ["-m", "service"]
        return [
            sys.executable, *start, "--db", str(self.db_path), "--host", self.host,
            "--port", str(self.port), "--network", self.network,
            "--timeout-scale", repr(self.timeout_scale), *self.extra_args,
        ]

    def _spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = self._popen()

    def _popen(self, held: bool = False) -> subprocess.Popen[bytes]:
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            how = " (held until restart_prepared)" if held else ""
            log.write(f"\n===== start #{self.starts} on port {self.port}{how} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self._command(held), cwd=REPO, env=env,
                stdin=subprocess.PIPE if held else subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.pids.append(proc.pid)
        return proc

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.port is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"server exited with {self.proc.returncode} before answering:\n"
                    + self.log_tail()
                )
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
                try:
                    conn.request("GET", "/api/v1/info")
                    resp = conn.getresponse()
                    body = resp.read()
                finally:
                    conn.close()
                if resp.status == 200:
                    self.info = json.loads(body)
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"no answer from {self.url}/api/v1/info within {self.ready_timeout} s:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def _signal(self, sig: signal.Signals, wait: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        proc.wait(timeout=wait)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Make (unstarted) :class:`ServerProcess` objects; all of them die at teardown."""
    made: list[ServerProcess] = []

    def make(name: str = "server", **kwargs: Any) -> ServerProcess:
        server = ServerProcess(tmp_path / name, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
    left = [pid for server in made for pid in server.pids if pid_alive(pid)]
    assert not left, f"server processes left behind: {left}"


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A started exchange (``--timeout-scale 0.05``): ``.url``, ``.db_path``,
    ``.operator_key``; killed at teardown."""
    return server_factory().start()
