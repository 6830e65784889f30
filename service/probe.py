"""``POST /api/v1/probe``: can buyers reach this seller's endpoint directly?

A seller that starts selling asks the exchange to call back the URL it would announce. The
exchange sends ``GET {url}/probe/{nonce}`` with a fresh random nonce and expects the
seller's signature over that nonce (:func:`bitwrk.protocol.probe_document`), so a URL that
reaches some other service, or another seller, does not count. The answer decides between
announcing the URL and falling back to the relay (docs/relay.md).

The exchange calls only public addresses (the buyer's rule, bitwrk/endpoints.py) unless
the operator allows local ones (tests, a LAN exchange), and only when it runs a relay —
without one there is nothing to choose, and the exchange makes no outgoing calls at all.
One probe per address at a time and every ``PROBE_INTERVAL`` seconds; the signed request's
nonce is recorded, so a probe cannot be replayed.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from bitwrk.endpoints import check_endpoint_url, check_public_host
from bitwrk.errors import BitwrkError, InvalidRequest, RateLimited
from bitwrk.keys import verify_message
from bitwrk.protocol import probe_document
from bitwrk.retry import describe

from .api import _json, read_signed
from .appkeys import COMMITTER, CONFIG, EXCHANGE

routes = web.RouteTableDef()
PROBE_TIMEOUT = 5.0
PROBE_INTERVAL = 2.0  # seconds between probes of one address
MAX_ANSWER = 4096
_last_probe = web.AppKey("last_probe", dict)


@routes.post("/api/v1/probe")
async def probe(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"probe"}))
    fields = signed[0]
    if set(fields) != {"action", "exchange", "address", "nonce", "url"}:
        raise InvalidRequest("a probe has exactly the fields action, exchange, address,"
                             " nonce and url")
    url = str(fields["url"]).rstrip("/")
    check_endpoint_url(url)
    address = str(fields["address"])
    _rate_limit(request.app, address)
    ex = request.app[EXCHANGE]
    await request.app[COMMITTER].submit(lambda: ex.note_signer(signed))
    cfg = request.app[CONFIG]
    if cfg.relay_url is None:
        return _json({"reachable": None, "url": url,
                      "reason": "this exchange runs no relay: nothing to choose, not probed"})
    reason = await _call_back(url, address, ex.exchange_id, cfg.allow_local_probes)
    return _json({"reachable": reason is None, "url": url, "reason": reason})


def _rate_limit(app: web.Application, address: str) -> None:
    last: dict[str, float] = app[_last_probe]
    now = time.monotonic()
    if now - last.get(address, -PROBE_INTERVAL) < PROBE_INTERVAL:
        raise RateLimited("one probe per address every few seconds",
                          retry_after=PROBE_INTERVAL)
    last[address] = now
    if len(last) > 10_000:  # forget the oldest half; a flood of addresses stays bounded
        for key in sorted(last, key=last.__getitem__)[:5_000]:
            del last[key]


async def _call_back(url: str, address: str, exchange: str, allow_local: bool) -> str | None:
    """Why ``url`` does not reach ``address``'s endpoint, or None when it does."""
    nonce = secrets.token_hex(16)
    try:
        if not allow_local:
            await check_public_host(url)
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(f"{url}/probe/{nonce}", allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_ANSWER)
            if resp.status != 200:
                return f"the endpoint answered HTTP {resp.status}"
        answer: Any = json.loads(raw)
        signature = str(answer["signature"])
    except (BitwrkError, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError,
            TypeError) as exc:
        return f"cannot reach {url}: {describe(exc)}"
    if not verify_message(address, signature, probe_document(exchange, address, nonce)):
        return "the endpoint answered, but not with this seller's signature"
    return None


def install(app: web.Application) -> None:
    app[_last_probe] = {}
    app.add_routes(routes)
