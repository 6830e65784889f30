"""The seller's worker endpoint (HTTP): where buyers push jobs and fetch sealed results.

Routes under ``/bitwrk/v1/tx/{txid}``; every request carries the buyer's signature (see
:mod:`peer`). Bodies are raw bytes, encrypted end to end: the buyer secret and canonical
manifest, the wanted list, the chunk stream (each sealed on the trade's :class:`Channel`)
and the result (sealed with its one-time key, which reaches the buyer wrapped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import BitwrkError, InvalidRequest, http_status
from ..protocol import probe_document
from .peer import HEADER, PeerGate, header_signer_key
from .seller import SellerAgent

log = logging.getLogger("bitwrk.seller")
MAX_MANIFEST = 4 * 1024 * 1024
MAX_SEALED_MANIFEST = MAX_MANIFEST + 64 * 1024  # salt, secret, record headers and tags
SELLER = web.AppKey("seller", SellerAgent)
GATE = web.AppKey("gate", PeerGate)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BitwrkError as exc:
        # The exchange's table; a refusal it does not list is a malformed request (400) or
        # one this trade cannot take now (409: wrong step, bad seal, mismatched secret).
        default = 400 if isinstance(exc, InvalidRequest) else 409
        return web.json_response(exc.to_json(), status=http_status(exc, default))


def _check(request: web.Request, action: str) -> tuple[SellerAgent, int, dict[str, object]]:
    seller = request.app[SELLER]
    text = request.match_info["txid"]
    if not text.isdigit():
        raise web.HTTPNotFound()
    txid = int(text)
    trade = seller.trade_for(txid)
    body = request.app[GATE].check(request.headers.get(HEADER), action, txid, trade.buyer)
    return seller, txid, body


async def post_manifest(request: web.Request) -> web.Response:
    seller, txid, auth = _check(request, "manifest")
    sealed = await request.content.read(MAX_SEALED_MANIFEST + 1)
    if len(sealed) > MAX_SEALED_MANIFEST:
        raise InvalidRequest("manifest too large")
    trade = seller.trade_for(txid)
    wanted = await seller.accept_manifest(trade, sealed, str(auth["workhash"]),
                                          header_signer_key(auth),
                                          request.app[GATE].exchange)
    assert trade.channel is not None
    return web.Response(body=trade.channel.seal("wanted", wanted),
                        content_type="application/octet-stream")


async def post_chunks(request: web.Request) -> web.Response:
    seller, txid, _ = _check(request, "chunks")
    trade = seller.trade_for(txid)
    receiver = seller.receiver(trade)
    assert trade.channel is not None
    opener = trade.channel.opener("chunks")
    async for piece in request.content.iter_chunked(256 * 1024):
        receiver.feed(opener.feed(piece))
    receiver.feed(opener.finish())
    receiver.finish()
    trade.bytes_received += receiver.wire_bytes
    trade.work_ready.set()
    return web.json_response({"chunks": receiver.chunks_stored, "bytes": receiver.wire_bytes})


async def get_result(request: web.Request) -> web.Response:
    seller, txid, _ = _check(request, "fetch")
    trade = seller.trade_for(txid)
    await trade.result_ready.wait()
    if trade.ciphertext is None:
        raise BitwrkError(f"no result: {trade.failure}")
    return web.Response(body=trade.ciphertext, content_type="application/octet-stream")


async def post_receipt(request: web.Request) -> web.Response:
    seller, txid, auth = _check(request, "receipt")
    seller.accept_receipt(seller.trade_for(txid), str(auth["encresulthash"]),
                          str(auth["receipt"]), request.app[GATE].exchange)
    return web.json_response({"ok": True})


async def get_probe(request: web.Request) -> web.Response:
    """Answer the exchange's reachability probe: our signature over its fresh nonce."""
    nonce = request.match_info["nonce"]
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise web.HTTPNotFound()
    key = request.app[SELLER].client_key()
    document = probe_document(request.app[GATE].exchange, key.address, nonce)
    return web.json_response({"address": key.address, "signature": key.sign_message(document)})


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SELLER].status(), dumps=lambda o: json.dumps(o))


def endpoint_app(seller: SellerAgent, exchange_id: str) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_MANIFEST)
    app[SELLER] = seller
    app[GATE] = PeerGate(exchange_id)
    app.router.add_post("/bitwrk/v1/tx/{txid}/manifest", post_manifest)
    app.router.add_post("/bitwrk/v1/tx/{txid}/chunks", post_chunks)
    app.router.add_get("/bitwrk/v1/tx/{txid}/result", get_result)
    app.router.add_post("/bitwrk/v1/tx/{txid}/receipt", post_receipt)
    app.router.add_get("/bitwrk/v1/status", get_status)
    app.router.add_get("/bitwrk/v1/probe/{nonce}", get_probe)
    return app
