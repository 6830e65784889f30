"""Issue 11's resource findings against a real ``python -m service`` process: descriptor
exhaustion at a low ulimit, half-sent requests, 2,000 idle event subscribers and junk
POSTs that once grew the address cache. Generous timeouts: the machine is shared."""

from __future__ import annotations

import asyncio
import json
import resource
import shlex
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bitwrk.keys import PrivateKey
from bitwrk.protocol import sign_request
from tests.conftest import ARTICLE
from tests.e2e.conftest import ServerProcess


class LimitedServer(ServerProcess):
    """The exchange started under ``ulimit -n`` (a shell applies it, then execs)."""

    def __init__(self, workdir: Path, nofile: int, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.nofile = nofile

    def _command(self, held: bool = False) -> list[str]:
        inner = " ".join(shlex.quote(a) for a in super()._command())
        return ["sh", "-c", f"ulimit -n {self.nofile} && exec {inner}"]


@pytest.fixture
def make_server(tmp_path: Path) -> Any:
    made: list[ServerProcess] = []

    def make(*args: str, nofile: int | None = None) -> ServerProcess:
        workdir = tmp_path / f"server{len(made)}"
        server = (LimitedServer(workdir, nofile, extra_args=args) if nofile
                  else ServerProcess(workdir, extra_args=args))
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


async def _get(url: str, source: str = "127.0.0.2", timeout: float = 20.0) -> Any:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(url, timeout=timeouts) as resp:
        return resp.status, await resp.json()


async def _half_sent(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send half a request's headers and then nothing."""
    socks: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(s, (host, port))
            s.send(b"POST /api/v1/bids HTTP/1.1\r\nHost: x\r\nContent-Le")
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def test_descriptor_exhaustion_and_half_sent_requests(
    make_server: Callable[..., ServerProcess],
) -> None:
    """1,100 half-sent requests against a server limited to 512 descriptors: the excess
    is refused at accept, /info from another client address still answers, the log stays
    small, and the half-sent ones are closed after the header timeout."""
    _raise_own_fd_limit(2048)
    server = make_server("--max-connections-per-ip", "150", "--header-timeout", "2",
                         nofile=512)
    host, port = server.host, server.port
    assert port is not None
    socks = await _half_sent(host, port, 1100)
    try:
        await asyncio.sleep(1.0)
        started = time.monotonic()
        status, info = await _get(server.url + "/api/v1/info")
        assert status == 200 and info["exchange"]
        assert time.monotonic() - started < 10.0
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if all(_closed_by_server(s) for s in socks):
                break
            await asyncio.sleep(0.5)
        assert all(_closed_by_server(s) for s in socks), "half-sent requests stay open"
    finally:
        for s in socks:
            s.close()
    assert server.running, server.log_tail()
    assert server.log_path.stat().st_size < 200_000, server.log_tail(2000)
    assert "Traceback" not in server.log_path.read_text(errors="replace")


async def test_two_thousand_idle_subscribers_do_not_stall_bids(
    make_server: Callable[..., ServerProcess],
) -> None:
    _raise_own_fd_limit(4096)
    server = make_server("--max-connections-per-ip", "3000")
    assert server.port is not None
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(2000):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            streams.append((reader, writer))
        for reader, _ in streams[:: 100]:
            head = await asyncio.wait_for(reader.readuntil(b"event: hello"), 60)
            assert b"200 OK" in head
        exchange = str(server.info["exchange"])
        async with aiohttp.ClientSession() as session:
            durations = []
            for i in range(50):
                body = sign_request(PrivateKey.generate("regtest"), {
                    "action": "bid", "exchange": exchange, "nonce": i + 1, "type": "sell",
                    "article": ARTICLE, "price": 1000 + i})
                started = time.monotonic()
                async with session.post(server.url + "/api/v1/bids", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                durations.append(time.monotonic() - started)
        assert sorted(durations)[25] < 1.0, durations  # the bench measures it properly
        for reader, _ in streams[:: 100]:  # every subscriber hears the book change
            assert b"event: book" in await asyncio.wait_for(
                reader.readuntil(b"event: book"), 60)
    finally:
        for _, writer in streams:
            writer.close()
    assert server.running, server.log_tail()


async def test_junk_posts_do_not_grow_memory(make_server: Callable[..., ServerProcess]) -> None:
    """5,000 POSTs with a different 8 KB junk address each (the old cache kept every one,
    decoded before the signature check): RSS grows by less than 30 MiB."""
    server = make_server()
    assert server.pid is not None
    exchange = str(server.info["exchange"])
    async with aiohttp.ClientSession() as session:
        async def junk(i: int) -> None:
            body = {"action": "bid", "exchange": exchange, "address": f"{i:08d}" + "1" * 8000,
                    "nonce": 1, "type": "buy", "article": ARTICLE, "price": 1,
                    "signature": "x"}
            async with session.post(server.url + "/api/v1/bids", data=json.dumps(body),
                                    headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400

        await asyncio.gather(*(junk(i) for i in range(200)))  # warm-up
        before = _rss_kib(server.pid)
        for start in range(200, 5200, 100):
            await asyncio.gather(*(junk(i) for i in range(start, start + 100)))
        grown = _rss_kib(server.pid) - before
    assert grown < 30 * 1024, f"RSS grew by {grown} KiB"
    assert server.running


async def test_a_half_sent_body_is_answered_408(make_server: Callable[..., ServerProcess]
                                                ) -> None:
    server = make_server("--body-timeout", "1")
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"POST /api/v1/bids HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"action\": ")
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert time.monotonic() - started < 20
    finally:
        writer.close()
    status, _ = await _get(server.url + "/api/v1/info")
    assert status == 200


async def _cut_off(host: str, port: int, path: bytes, reset: bool) -> None:
    """Send a request head and part of its body, then go away (a client killed mid-send):
    with an RST when ``reset``, else a plain close."""
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 1000\r\n\r\n{\"action\": ")
        await asyncio.sleep(0.3)  # the server is reading the body now
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()


async def test_a_client_gone_mid_body_is_no_server_error(
        make_server: Callable[..., ServerProcess]) -> None:
    """The soak test's buyer, SIGKILLed while it posted a message, left a traceback
    ("unhandled error ... ConnectionResetError") in the exchange's log."""
    server = make_server()
    assert server.port is not None
    for path in (b"/api/v1/bids", b"/api/v1/transactions/1/messages"):
        for reset in (True, False):
            await _cut_off(server.host, server.port, path, reset)
    await asyncio.sleep(0.5)
    status, _ = await _get(server.url + "/api/v1/info")
    assert status == 200
    log = server.log_path.read_text()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
