"""A peer that goes away mid-body (killed, network lost) is a clear BodyCutOff on every
server that reads bodies, never an unhandled ConnectionResetError with a traceback in the
log (the exchange's own case runs against a real process: tests/service/test_abuse_process)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from aiohttp import web

from bitwrk.daemon import endpoint, lan
from bitwrk.errors import BodyCutOff, http_status


class Recorder:
    """Stands in for the trade endpoint: reads the body and keeps what reading raised."""

    def __init__(self) -> None:
        self.raised: list[BaseException] = []

    async def serve(self, method: str, path: str, header: str | None, body: Any) -> Any:
        try:
            async for _piece in body:
                pass
        except Exception as exc:  # recorded for the test
            self.raised.append(exc)
        return endpoint.Answer(400, b"{}")


async def _cut_off(port: int, path: bytes, reset: bool) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        await asyncio.sleep(0.2)
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
    await asyncio.sleep(0.2)


async def test_trade_endpoint_and_lan_hub_see_a_cut_off_body() -> None:
    recorder = Recorder()
    lan_raised: list[BaseException] = []

    async def lan_route(request: web.Request) -> web.Response:
        try:
            await lan._body(request)
        except Exception as exc:  # recorded for the test
            lan_raised.append(exc)
        return web.Response(status=400)

    app = web.Application()
    app[endpoint.ENDPOINT] = recorder  # type: ignore[misc]
    app.router.add_post("/bitwrk/v1/trades/{tail:.*}", endpoint.trade_route)
    app.router.add_post("/lan", lan_route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for reset in (True, False):
            await _cut_off(port, b"/bitwrk/v1/trades/1/chunks", reset)
            await _cut_off(port, b"/lan", reset)
    finally:
        await runner.cleanup()
    for raised in (recorder.raised, lan_raised):
        assert len(raised) == 2, raised
        assert all(isinstance(e, BodyCutOff) for e in raised), raised
    assert http_status(BodyCutOff("x")) == 400
