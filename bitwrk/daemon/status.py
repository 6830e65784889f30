"""The headless seller's status page: slots, recent units, balance, errors, pause/resume.

Served on loopback (``127.0.0.1``) by default. Every request must name this server in its
``Host`` header (``localhost:PORT`` or an IP address with this port): a page on another
site that rebinds its own DNS name to 127.0.0.1 sends its own name, and is refused before it
can read the token, the addresses or the balance. Reading is open to the machine; the one
change, pause/resume, is refused unless it comes from a loopback address, names a loopback
``Host`` (no DNS rebinding) and carries the page's token in ``X-BitWrk-Token`` — a header a
foreign page cannot set without a CORS preflight this server never grants, and a token it
cannot read (same-origin policy), so no cross-site request can press the button.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..client import describe
from ..errors import BitwrkError
from .seller import SellerAgent

STATIC = Path(__file__).with_name("status_static")
TOKEN_HEADER = "X-BitWrk-Token"
BALANCE_TTL = 1.0  # seconds a balance read from the exchange is reused
BALANCE_WAIT = 3.0  # seconds the page waits for a balance (the daemon may be retrying)
STAGES = ("establishing", "receiving work", "rendering", "awaiting receipt",
          "publishing result")
CSP = ("default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self';"
       " img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
Pause = Callable[[bool], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusPage:
    """What the handlers share: the agent, the pause command, the token, a balance cache."""

    def __init__(self, seller: SellerAgent, pause: Pause, exchange_url: str) -> None:
        self.seller = seller
        self.pause = pause
        self.exchange_url = exchange_url.rstrip("/")
        self.token = secrets.token_urlsafe(24)
        self._balance: dict[str, Any] = {}
        self._balance_at = -BALANCE_TTL

    async def balance(self) -> dict[str, Any]:
        outage = self.seller.client.outage()
        if outage is not None:  # the daemon is retrying: say so, don't queue behind it
            return {**self._balance, "error": outage}
        if time.monotonic() - self._balance_at >= BALANCE_TTL:
            try:
                async with asyncio.timeout(BALANCE_WAIT):
                    account = await self.seller.client.account()
                self._balance = {"available": account.available,
                                 "blocked": account.blocked}
            except (BitwrkError, aiohttp.ClientError, TimeoutError) as exc:
                why = self.seller.client.outage() or f"exchange unreachable: {describe(exc)}"
                self._balance = {**self._balance, "error": why}
            self._balance_at = time.monotonic()
        return self._balance

    async def snapshot(self) -> dict[str, Any]:
        s = self.seller
        return {
            "address": s.client.address, "exchange": self.exchange_url,
            "paused": not s.selling.is_set(), "stopping": s.stopping,
            "offer": {"articles": list(s.offer.articles), "min_price": s.offer.min_price,
                      "slots": s.offer.slots},
            "slots": [slot_view(s, i, time.time()) for i in range(s.offer.slots)],
            "units": units_view(s), "earned": s.earned,
            "errors": [{"time": t, "text": text} for t, text in reversed(s.errors)],
            "balance": await self.balance(), "time": time.time(),
            "reach": s.reach.view(),
        }


def slot_view(seller: SellerAgent, slot: int, now: float) -> dict[str, Any]:
    view: dict[str, Any] = {"slot": slot, "state": seller.slot_state.get(slot, "starting")}
    txid = seller.slot_trade.get(slot)
    trade = seller.trades.get(txid) if txid is not None else None
    if trade is not None:
        step = STAGES.index(trade.stage) if trade.stage in STAGES else 0
        view.update(txid=trade.txid, buyer=trade.buyer, price=trade.price, stage=trade.stage,
                    step=step + 1, steps=len(STAGES), elapsed=now - trade.started,
                    bytes_received=trade.bytes_received)
    return view


def units_view(seller: SellerAgent) -> list[dict[str, Any]]:
    """One row per trade (its latest stage), newest first."""
    rows: dict[int, dict[str, Any]] = {}
    for at, unit in seller.recent_units:
        row = rows.setdefault(unit.txid, {"txid": unit.txid, "buyer": unit.buyer,
                                          "started": at, "seconds": 0.0, "earned": 0})
        row.update(stage=unit.stage, price=unit.price, detail=unit.detail, time=at)
        if unit.seconds:
            row["seconds"] = unit.seconds
        if unit.stage == "paid":
            row["earned"] = unit.price
    return sorted(rows.values(), key=lambda r: r["started"], reverse=True)


PAGE = web.AppKey("status_page", StatusPage)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_is_loopback(host_header: str) -> bool:
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]")
    return name == "localhost" or _is_loopback(name)


def host_is_ours(host_header: str, port: int | None) -> bool:
    """``Host`` names this server: ``localhost`` or an IP literal, and our port.

    DNS rebinding needs a host *name* the attacker controls; an IP literal cannot be one.
    """
    if host_header.startswith("["):  # [::1]:8571
        name, _, rest = host_header[1:].partition("]")
        given = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, given = host_header.partition(":")
    if port is None or given != str(port):
        return False
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def own_host_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
    if not host_is_ours(request.headers.get("Host", ""), port):
        raise web.HTTPForbidden(text="this status page answers only to its own address "
                                     "(e.g. http://127.0.0.1:PORT/)")
    return await handler(request)


def check_change_allowed(request: web.Request, token: str) -> None:
    """Raise 403 unless the request is one the status page itself sent from this machine."""
    host = request.headers.get("Host", "")
    origin = request.headers.get("Origin")
    sent = request.headers.get(TOKEN_HEADER, "")
    if not _is_loopback(request.remote):
        raise web.HTTPForbidden(text="changes only from this machine")
    if not _host_is_loopback(host):
        raise web.HTTPForbidden(text="wrong Host header")
    if origin is not None and origin != f"http://{host}":
        raise web.HTTPForbidden(text="cross-origin request refused")
    if not secrets.compare_digest(sent.encode(), token.encode()):
        raise web.HTTPForbidden(text=f"missing or wrong {TOKEN_HEADER}")


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def page(request: web.Request) -> web.Response:
    state = request.app[PAGE]
    html = (STATIC / "status.html").read_text()
    html = html.replace("{{token}}", state.token)
    html = html.replace("{{exchange}}", escape(state.exchange_url))
    return web.Response(text=html, content_type="text/html", headers=_headers())


async def status(request: web.Request) -> web.Response:
    view = await request.app[PAGE].snapshot()
    return web.json_response(view, headers=_headers(), dumps=lambda o: json.dumps(o))


async def pause(request: web.Request) -> web.Response:
    state = request.app[PAGE]
    check_change_allowed(request, state.token)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text="body must be JSON") from exc
    except ConnectionResetError as exc:  # the page went away mid-request: nothing changes
        raise web.HTTPBadRequest(text="the request body did not arrive") from exc
    if not isinstance(body, dict) or not isinstance(body.get("paused"), bool):
        raise web.HTTPBadRequest(text='body must be {"paused": true|false}')
    await asyncio.shield(state.pause(body["paused"]))
    return web.json_response({"paused": not state.seller.selling.is_set()}, headers=_headers())


def status_app(seller: SellerAgent, pause_selling: Pause, exchange_url: str) -> web.Application:
    app = web.Application(client_max_size=4096, middlewares=[own_host_only])
    app[PAGE] = StatusPage(seller, pause_selling, exchange_url)
    app.router.add_get("/", page)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/pause", pause)
    app.router.add_static("/static", STATIC)
    return app
