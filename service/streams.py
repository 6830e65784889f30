"""The server-sent event streams and the tokens that open the private ones.

The public stream (no ``address``) carries trades, book changes and transaction phases.
A participant's private stream (its bids, transactions and balances) needs a token only
its key can get: ``POST /api/v1/events/token`` with a signed ``events_token`` request
(fields ``action``, ``exchange``, ``address``, ``nonce``, ``signature``) answers
``{"address", "token", "expires"}``; then ``GET /api/v1/events?address=A&token=T``
subscribes. The token is an HMAC of (exchange, address, expiry) under a secret kept in the
store, so it survives restarts and is checked without a lookup; it must be unexpired when
the stream opens (an open stream is not cut when it expires later). Get a fresh token for
every (re)connect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Any

from aiohttp import web

from bitwrk.errors import Forbidden
from bitwrk.keys import check_address

from . import db
from .appkeys import BUS, EXCHANGE
from .events import Subscription
from .exchange import Exchange, Signed, exact_fields

TOKEN_FIELDS = frozenset({"action", "exchange", "address", "nonce"})
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")


def ensure_secret(ex: Exchange) -> None:
    """Create the token secret once per store (outside any request)."""
    if db.meta(ex.db, "stream_secret") is None:
        ex.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('stream_secret', ?)",
                      (secrets.token_hex(32),))


def _mac(ex: Exchange, address: str, expires: int) -> str:
    secret = bytes.fromhex(db.meta(ex.db, "stream_secret") or "")
    text = f"{ex.exchange_id}|{address}|{expires}".encode()
    return hmac.new(secret, text, hashlib.sha256).hexdigest()


def issue_token(ex: Exchange, signed: Signed) -> tuple[dict[str, Any], list[Any]]:
    """A private-stream token for the signer (consumes its nonce like any signed request)."""
    fields = signed[0]
    exact_fields(fields, TOKEN_FIELDS)
    address = str(fields["address"])
    with ex.write():
        ex._use_nonce(address, fields["nonce"])
    expires = int(ex.clock() + ex.cfg.limits.stream_token_lifetime)
    token = f"{expires}.{_mac(ex, address, expires)}"
    return {"address": address, "token": token, "expires": expires}, []


def check_token(ex: Exchange, address: str, token: str | None) -> None:
    match = _TOKEN.fullmatch(token or "")
    if match is None:
        raise Forbidden("a private event stream needs ?token= from POST /api/v1/events/token")
    expires = int(match[1])
    if expires <= ex.clock() or not hmac.compare_digest(match[2], _mac(ex, address, expires)):
        raise Forbidden("the stream token is expired or not for this address")


def _subscription(request: web.Request, address: str | None) -> Subscription:
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client gone")
    chunked = request.version >= (1, 1)

    def write(data: bytes) -> None:
        # The body is chunked on HTTP/1.1 (aiohttp frames the hello; these follow it).
        transport.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    return Subscription(address, write, transport.get_write_buffer_size, transport.is_closing)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one participant's bids/transactions/balances (with a token), or
    (no address) the public market stream of trades, book changes and transaction phases."""
    ex, bus = request.app[EXCHANGE], request.app[BUS]
    address = request.query.get("address")
    if address is not None:
        check_address(address, ex.cfg.network)
        check_token(ex, address, request.query.get("token"))
    sub = _subscription(request, address)
    bus.subscribe(sub)  # TooManyStreams (429) before anything is sent
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    if request.version >= (1, 1):
        response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        hello = json.dumps({"time": ex.clock(), "address": address, "epoch": bus.epoch})
        await response.write(f"event: hello\ndata: {hello}\n\n".encode())
        sub.ready = True  # from now on the fan-out writes; the client re-reads state anyway
        await sub.done.wait()
    except ConnectionResetError:
        pass
    finally:
        bus.unsubscribe(sub)
    return response

