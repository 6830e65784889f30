"""Helpers for relay tests: the relay as a real ``python -m service relay`` process, an
exchange that advertises it, and a TCP proxy whose connections a test can cut (a seller's
home network dropping)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ServerError, ServerProcess
from tools.processes import free_port


class RelayProcess(ServerProcess):
    """``python -m service relay`` on a fixed port: start, kill (SIGKILL), restart."""

    def __init__(self, workdir: Path, exchange_url: str, port: int,
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__(workdir, port=port, extra_args=extra)
        self.exchange_url = exchange_url
        self.log_path = workdir / "relay.log"
        self.capture = workdir / "capture.bin"

    def _command(self, held: bool = False) -> list[str]:
        assert not held, "the relay has no held start"
        return [sys.executable, "-m", "service", "relay", "--exchange", self.exchange_url,
                "--host", self.host, "--port", str(self.port), "--capture",
                str(self.capture), *self.extra_args]

    def status(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            conn.request("GET", "/relay/v1/status")
            data: dict[str, Any] = json.loads(conn.getresponse().read())
            return data
        finally:
            conn.close()

    def wait_tunnels(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status()["tunnels"] != count:
            assert time.monotonic() < deadline, f"not {count} tunnels: {self.log_tail()}"
            time.sleep(0.2)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(f"relay exited: {self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                self.status()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"relay not ready: {self.log_tail()}")
            time.sleep(0.05)


def relay_pair(root: Path, timeout_scale: float = 0.2, allow_local_probes: bool = False,
               relay_args: tuple[str, ...] = ()) -> tuple[ServerProcess, RelayProcess]:
    """An exchange advertising a relay, and that relay, both started."""
    port = free_port()
    extra = ("--relay-url", f"http://127.0.0.1:{port}")
    if allow_local_probes:
        extra += ("--allow-local-probes",)
    exchange = ServerProcess(root / "exchange", timeout_scale=timeout_scale,
                             extra_args=extra).start()
    relay = RelayProcess(root / "relay", exchange.url, port, relay_args)
    try:
        relay.start()
    except BaseException:
        exchange.close()
        raise
    return exchange, relay


class CutProxy:
    """A loopback TCP proxy to ``target`` in a thread of its own; ``cut()`` drops every
    connection through it and refuses new ones until ``heal()``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
        for w in list(self._writers):
            w.transport.abort()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer),
                             return_exceptions=True)
        self._writers -= {writer, up_w}

    def cut(self) -> None:
        def go() -> None:
            self.open = False
            for w in list(self._writers):
                w.transport.abort()
        self._loop.call_soon_threadsafe(go)

    def heal(self) -> None:
        self.open = True

    def close(self) -> None:
        self._loop.call_soon_threadsafe(lambda: self._stop.set())
        self._thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
