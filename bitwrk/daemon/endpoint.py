"""The seller's worker endpoint: where buyers push jobs and fetch sealed results.

Routes under ``/bitwrk/v1/tx/{txid}``; every request carries the buyer's signature (see
:mod:`peer`). Bodies are raw bytes, encrypted end to end: the buyer secret and canonical
manifest, the wanted list, the chunk stream (each sealed on the trade's :class:`Channel`)
and the result (sealed with its one-time key, which reaches the buyer wrapped). The same
routes are served over HTTP and, for a seller behind NAT, over the relay's tunnel.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from ..errors import BitwrkError, BodyCutOff, InvalidRequest, http_status
from ..protocol import probe_document
from .peer import HEADER, PeerGate, header_signer_key
from .seller import SellerAgent

log = logging.getLogger("bitwrk.seller")
MAX_MANIFEST = 4 * 1024 * 1024
MAX_SEALED_MANIFEST = MAX_MANIFEST + 64 * 1024  # salt, secret, record headers and tags
PIECE = 256 * 1024
_TRADE_PATH = re.compile(r"/bitwrk/v1/tx/([0-9]{1,19})/(manifest|chunks|result|receipt)")
_METHODS = {"manifest": "POST", "chunks": "POST", "result": "GET", "receipt": "POST"}
Body = AsyncIterator[bytes]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/octet-stream"


def _json(data: object, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode(), "application/json")


class TradeEndpoint:
    """The trade routes apart from their transport: the HTTP endpoint (``endpoint_app``)
    and the relay's tunnel (:mod:`relay`) both hand requests to ``serve``, so a buyer's
    request is checked the same way whichever way it came (one gate, one nonce record)."""

    def __init__(self, seller: SellerAgent, exchange_id: str) -> None:
        self.seller = seller
        self.gate = PeerGate(exchange_id)

    async def serve(self, method: str, path: str, header: str | None, body: Body) -> Answer:
        match = _TRADE_PATH.fullmatch(path)
        if match is None or _METHODS[match.group(2)] != method:
            return _json({"error": "not_found", "message": "no such route"}, 404)
        txid, action = int(match.group(1)), match.group(2)
        routes = {"manifest": self._manifest, "chunks": self._chunks, "result": self._result,
                  "receipt": self._receipt}
        try:
            return await routes[action](txid, header, body)
        except BitwrkError as exc:
            # The exchange's table; a refusal it does not list is a malformed request (400)
            # or one this trade cannot take now (409: wrong step, bad seal, wrong secret).
            default = 400 if isinstance(exc, InvalidRequest) else 409
            return _json(exc.to_json(), http_status(exc, default))

    def _check(self, action: str, txid: int, header: str | None) -> dict[str, object]:
        trade = self.seller.trade_for(txid)
        return self.gate.check(header, action, txid, trade.buyer)

    async def _manifest(self, txid: int, header: str | None, body: Body) -> Answer:
        auth = self._check("manifest", txid, header)
        sealed = bytearray()
        async for piece in body:
            sealed += piece
            if len(sealed) > MAX_SEALED_MANIFEST:
                raise InvalidRequest("manifest too large")
        trade = self.seller.trade_for(txid)
        wanted = await self.seller.accept_manifest(trade, bytes(sealed), str(auth["workhash"]),
                                                   header_signer_key(auth), self.gate.exchange)
        assert trade.channel is not None
        return Answer(200, trade.channel.seal("wanted", wanted))

    async def _chunks(self, txid: int, header: str | None, body: Body) -> Answer:
        self._check("chunks", txid, header)
        trade = self.seller.trade_for(txid)
        receiver = self.seller.receiver(trade)
        assert trade.channel is not None
        opener = trade.channel.opener("chunks")
        async for piece in body:
            receiver.feed(opener.feed(piece))
        receiver.feed(opener.finish())
        receiver.finish()
        trade.bytes_received += receiver.wire_bytes
        trade.work_ready.set()
        return _json({"chunks": receiver.chunks_stored, "bytes": receiver.wire_bytes})

    async def _result(self, txid: int, header: str | None, body: Body) -> Answer:
        self._check("fetch", txid, header)
        trade = self.seller.trade_for(txid)
        await trade.result_ready.wait()
        if trade.ciphertext is None:
            raise BitwrkError(f"no result: {trade.failure}")
        return Answer(200, trade.ciphertext)

    async def _receipt(self, txid: int, header: str | None, body: Body) -> Answer:
        auth = self._check("receipt", txid, header)
        self.seller.accept_receipt(self.seller.trade_for(txid), str(auth["encresulthash"]),
                                   str(auth["receipt"]), self.gate.exchange)
        return _json({"ok": True})


ENDPOINT = web.AppKey("endpoint", TradeEndpoint)


async def _pieces(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in pieces; a sender gone mid-body is :class:`BodyCutOff`."""
    try:
        async for piece in request.content.iter_chunked(PIECE):
            yield piece
    except ConnectionResetError as exc:
        raise BodyCutOff() from exc


async def trade_route(request: web.Request) -> web.Response:
    answer = await request.app[ENDPOINT].serve(request.method, request.path,
                                               request.headers.get(HEADER), _pieces(request))
    return web.Response(status=answer.status, body=answer.body,
                        content_type=answer.content_type)


async def get_probe(request: web.Request) -> web.Response:
    """Answer the exchange's reachability probe: our signature over its fresh nonce."""
    nonce = request.match_info["nonce"]
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise web.HTTPNotFound()
    endpoint = request.app[ENDPOINT]
    key = endpoint.seller.client_key()
    document = probe_document(endpoint.gate.exchange, key.address, nonce)
    return web.json_response({"address": key.address, "signature": key.sign_message(document)})


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENDPOINT].seller.status(),
                             dumps=lambda o: json.dumps(o))


def endpoint_app(endpoint: TradeEndpoint) -> web.Application:
    app = web.Application(client_max_size=MAX_MANIFEST)
    app[ENDPOINT] = endpoint
    app.router.add_route("*", "/bitwrk/v1/tx/{txid}/{action}", trade_route)
    app.router.add_get("/bitwrk/v1/status", get_status)
    app.router.add_get("/bitwrk/v1/probe/{nonce}", get_probe)
    return app
