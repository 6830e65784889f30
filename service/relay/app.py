"""The relay's aiohttp application: seller tunnels in, buyer requests through them.

A seller connects to ``/relay/v1/tunnel`` (WebSocket). The relay sends a fresh random
challenge; the seller answers with a signed request over it (``action=tunnel``, this
exchange, the challenge), so a recorded handshake is worth nothing on the next connection.
The exchange must know the address (:meth:`ExchangeGate.check_registered`). A new tunnel
of the same seller replaces the old one (a reconnect after a network change).

A buyer's request to ``/s/{seller}/bitwrk/v1/tx/{txid}/{action}`` carries the buyer's
signed ``X-BitWrk-Auth`` header; the relay checks the signature and asks the exchange that
the signer bought from that seller in that live transaction, then forwards the request,
header and ciphertext unchanged, as one stream. The seller's endpoint checks the header
again (nonce, action, the trade) — the relay can neither read the bodies nor forge a
request. ``/s/{seller}/bitwrk/v1/status`` is answered by the relay itself: the tunnel is
up (200) or not (503), which is how a buyer notices a seller gone mid-unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiohttp import web

from bitwrk.daemon.peer import HEADER
from bitwrk.errors import (
    BitwrkError,
    BodyCutOff,
    Busy,
    Forbidden,
    InvalidRequest,
    NotFound,
    SellerOffline,
    TooManyStreams,
    TunnelError,
    http_status,
)
from bitwrk.protocol import verify_request
from bitwrk.tunnel import FRAME, MAX_MESSAGE, Bucket, Mux, Stream

from .gate import ExchangeGate

log = logging.getLogger("bitwrk.relay")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TX_PATH = re.compile(r"tx/([0-9]{1,19})/(manifest|chunks|result|receipt)")
_ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{26,35}")


@dataclass(frozen=True)
class RelayConfig:
    exchange_url: str
    public_url: str  # what buyers reach this relay at; seller URLs live under it
    max_tunnels: int = 1000  # sellers connected at once
    max_streams_per_seller: int = 16  # buyer requests in flight through one tunnel
    seller_rate: float = 64 * 1024 * 1024  # bytes/s through one tunnel, both ways; 0: no cap
    body_idle: float = 60.0  # a body that stalls this long (either way) ends its stream
    heartbeat: float = 10.0  # WebSocket ping interval; a missed pong ends the tunnel
    handshake_timeout: float = 10.0
    capture: Path | None = None  # append every forwarded body byte here (tests, audits)


@dataclass
class Tunnel:
    address: str
    mux: Mux
    streams: int = 0
    bytes: int = 0


@dataclass
class Relay:
    config: RelayConfig
    gate: ExchangeGate
    tunnels: dict[str, Tunnel] = field(default_factory=dict)
    capture: BinaryIO | None = None

    def record(self, data: bytes) -> None:
        if self.capture is not None:
            self.capture.write(data)


RELAY = web.AppKey("relay", Relay)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BitwrkError as exc:
        return web.json_response(exc.to_json(), status=http_status(exc, 400))


# -- sellers ------------------------------------------------------------------------------


async def tunnel(request: web.Request) -> web.StreamResponse:
    relay = request.app[RELAY]
    cfg = relay.config
    if len(relay.tunnels) >= cfg.max_tunnels:
        raise Busy("the relay holds its maximum of tunnels; try again later")
    ws = web.WebSocketResponse(heartbeat=cfg.heartbeat, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    try:
        address = await _handshake(relay, ws)
    except (BitwrkError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        message = exc.message if isinstance(exc, BitwrkError) else "bad handshake"
        code = exc.code if isinstance(exc, BitwrkError) else "invalid_request"
        with contextlib.suppress(Exception):
            await ws.send_json({"error": code, "message": message})
        await ws.close()
        return ws
    old = relay.tunnels.get(address)
    me = relay.tunnels[address] = Tunnel(address, Mux(ws, bucket=Bucket(cfg.seller_rate)))
    if old is not None:
        await old.mux.ws.close(code=4000, message=b"replaced by a newer tunnel")
    log.info("tunnel up: %s (%d tunnels)", address, len(relay.tunnels))
    await ws.send_json({"ok": True, "url": f"{cfg.public_url.rstrip('/')}/s/{address}"
                                           "/bitwrk/v1"})
    try:
        await me.mux.run()
    finally:
        if relay.tunnels.get(address) is me:
            del relay.tunnels[address]
        log.info("tunnel down: %s (%s; %d bytes forwarded)", address, me.mux.closed, me.bytes)
    return ws


async def _handshake(relay: Relay, ws: web.WebSocketResponse) -> str:
    challenge = secrets.token_hex(32)
    exchange = await relay.gate.exchange_id()
    await ws.send_json({"challenge": challenge, "exchange": exchange})
    msg = await asyncio.wait_for(ws.receive(), relay.config.handshake_timeout)
    if msg.type != aiohttp.WSMsgType.TEXT or len(msg.data) > 4096:
        raise InvalidRequest("the handshake is one JSON text message")
    hello = json.loads(msg.data)
    address = verify_request(hello)
    if hello.get("action") != "tunnel" or hello.get("challenge") != challenge:
        raise InvalidRequest("sign action=tunnel over this connection's challenge")
    if hello.get("exchange") != exchange:
        raise InvalidRequest("signed for another exchange")
    await relay.gate.check_registered(address)
    return address


# -- buyers ---------------------------------------------------------------------------------


async def forward(request: web.Request) -> web.StreamResponse:
    relay = request.app[RELAY]
    seller, tail = request.match_info["seller"], request.match_info["tail"]
    if not _ADDRESS.fullmatch(seller):
        raise NotFound("no such seller")
    tun = relay.tunnels.get(seller)
    if tail == "status":
        if tun is None:
            raise SellerOffline(f"seller {seller} is not connected to this relay")
        return web.json_response({"seller": seller, "tunnel": "up"})
    match = _TX_PATH.fullmatch(tail)
    if match is None or request.method not in ("GET", "POST"):
        raise NotFound("the relay forwards only a trade's manifest, chunks, result, receipt")
    header = request.headers.get(HEADER)
    if not header or len(header) > 4096:
        raise Forbidden(f"a signed {HEADER} header is required")
    try:
        signed = json.loads(header)
    except ValueError:
        raise InvalidRequest(f"{HEADER} is not JSON") from None
    buyer = verify_request(signed)
    await relay.gate.check_trade(int(match.group(1)), buyer, seller)
    if tun is None:
        raise SellerOffline(f"seller {seller} is not connected to this relay")
    if tun.streams >= relay.config.max_streams_per_seller:
        raise TooManyStreams("too many requests in flight to this seller",
                             limit=relay.config.max_streams_per_seller)
    tun.streams += 1
    try:
        return await _through(relay, tun, request, header)
    finally:
        tun.streams -= 1


async def _through(relay: Relay, tun: Tunnel, request: web.Request,
                   header: str) -> web.StreamResponse:
    head = {"method": request.method, "path": "/bitwrk/v1/" + request.match_info["tail"],
            "headers": {HEADER: header}}
    stream = await tun.mux.open(head)
    upload = asyncio.create_task(_upload(relay, tun, request, stream))
    response: web.StreamResponse | None = None
    complete = False
    try:
        answer = await _head_or_failed_upload(stream, upload)
        response = web.StreamResponse(status=int(answer.get("status", 502)))
        response.content_type = str(answer.get("content_type", "application/octet-stream"))
        await response.prepare(request)
        while piece := await asyncio.wait_for(stream.read(), relay.config.body_idle):
            await tun.mux.throttle(len(piece))
            tun.bytes += len(piece)
            relay.record(piece)
            await response.write(piece)
        await response.write_eof()
        complete = True
        return response
    except (TunnelError, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
        await tun.mux.reset(stream, f"relay: {type(exc).__name__}: {exc}")
        if response is None:
            raise TunnelError(f"the tunnel to the seller failed: {exc}") from None
        raise  # mid-answer: the buyer sees the connection drop, as with a direct seller
    finally:
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upload
        if not complete and stream.reset_reason is None:  # e.g. the buyer went away
            tun.mux.reset_soon(stream, "the buyer's request ended")
        else:
            tun.mux.forget(stream)


async def _head_or_failed_upload(stream: Stream,
                                 upload: asyncio.Task[None]) -> dict[str, Any]:
    """The seller's response head; an upload that failed first fails the request (the
    seller may answer — a refusal — before it read the whole body)."""
    waits: set[asyncio.Future[Any]] = {stream.head, upload}
    while True:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if stream.head in done:
            return stream.head.result()
        upload.result()  # raises the upload's failure
        waits = {stream.head}


async def _upload(relay: Relay, tun: Tunnel, request: web.Request, stream: Stream) -> None:
    async for piece in _body(request, relay.config.body_idle):
        tun.bytes += len(piece)
        relay.record(piece)
        await stream.write(piece)
    await stream.end()


async def _body(request: web.Request, idle: float) -> AsyncIterator[bytes]:
    while True:
        try:
            piece, _ = await asyncio.wait_for(request.content.readchunk(), idle)
        except ConnectionResetError as exc:  # the buyer went away mid-body
            raise BodyCutOff() from exc
        if not piece:
            if request.content.at_eof():
                return
            continue
        for start in range(0, len(piece), FRAME):
            yield piece[start:start + FRAME]


async def status(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    return web.json_response({"tunnels": len(relay.tunnels),
                              "streams": sum(t.streams for t in relay.tunnels.values()),
                              "exchange": relay.config.exchange_url})


def create_relay_app(config: RelayConfig) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=1024)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            capture = config.capture.open("ab") if config.capture is not None else None
            app[RELAY] = Relay(config, ExchangeGate(config.exchange_url, session),
                               capture=capture)
            follower = asyncio.create_task(app[RELAY].gate.follow())
            yield
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            for tun in list(app[RELAY].tunnels.values()):
                await tun.mux.ws.close(code=1001, message=b"relay shutting down")
            if capture is not None:
                capture.close()

    app.cleanup_ctx.append(resources)
    app.router.add_get("/relay/v1/tunnel", tunnel)
    app.router.add_get("/relay/v1/status", status)
    app.router.add_route("*", "/s/{seller}/bitwrk/v1/{tail:.*}", forward)
    return app
