"""The seller's status page answers only to its own Host (no DNS rebinding): real HTTP."""

from __future__ import annotations

import asyncio
import http.client
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from bitwrk.daemon.status import PAGE, host_is_ours, status_app


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8571", True), ("localhost:8571", True), ("[::1]:8571", True),
    ("192.168.1.5:8571", True),  # an IP literal cannot be rebound
    ("evil.example:8571", False), ("localhost.evil.example:8571", False),
    ("127.0.0.1:80", False), ("127.0.0.1", False), ("", False), ("[::1]", False),
])
def test_host_header_rule(host: str, ok: bool) -> None:
    assert host_is_ours(host, 8571) is ok


def get(port: int, path: str, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


async def test_a_rebound_name_reads_nothing(unused_tcp_port: int) -> None:
    async def pause(paused: bool) -> None:
        return None

    app = status_app(SimpleNamespace(), pause, "http://exchange.invalid")  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    port = unused_tcp_port
    try:
        calls: list[Any] = [("evil.example", f"evil.example:{port}"),
                            ("local", f"127.0.0.1:{port}"), ("name", f"localhost:{port}")]
        results = {}
        for name, host in calls:
            results[name] = await asyncio.to_thread(get, port, "/", host)
        status_json = await asyncio.to_thread(get, port, "/api/status", f"evil.example:{port}")
    finally:
        await runner.cleanup()
    token = app[PAGE].token.encode()
    assert results["local"][0] == 200 and token in results["local"][1]
    assert results["name"][0] == 200
    assert results["evil.example"][0] == 403 and token not in results["evil.example"][1]
    assert status_json[0] == 403
