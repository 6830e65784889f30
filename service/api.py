"""HTTP handlers: parse → call the domain (no awaits there) → publish events → respond."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

import bitwrk
from bitwrk.articles import parse_article
from bitwrk.errors import InvalidRequest, NotFound, TooLarge, WrongExchange
from bitwrk.keys import check_address
from bitwrk.protocol import canonical_document, verify_request

from . import trades, views
from .appkeys import BUS, COMMITTER, CONFIG, EXCHANGE
from .events import Event
from .exchange import Exchange, Signed
from .openapi import openapi_document
from .phases import MESSAGES

routes = web.RouteTableDef()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


async def read_signed(request: web.Request, actions: frozenset[str]) -> Signed:
    """The verified body of a signed request: (fields, document, signature)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise TooLarge("request body too large", limit=request.app[CONFIG].max_body) from exc
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    if body.get("action") not in actions:
        raise InvalidRequest(f"action must be one of {sorted(actions)}", field="action")
    exchange = request.app[EXCHANGE]
    if body.get("exchange") != exchange.exchange_id:
        raise WrongExchange("signed for another exchange", expected=exchange.exchange_id)
    verify_request(body)
    check_address(body["address"], exchange.cfg.network)
    fields = {k: v for k, v in body.items() if k != "signature"}
    return fields, canonical_document(fields), str(body["signature"])


def _int_arg(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer") from exc


def _path_id(request: web.Request, name: str = "id") -> int:
    text = request.match_info[name]
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise NotFound(f"no such {name}: {text[:40]!r}")
    return int(text)


def _ex(request: web.Request) -> Exchange:
    return request.app[EXCHANGE]


async def _commit(
    request: web.Request, work: Callable[[], tuple[dict[str, Any], list[Event]]]
) -> web.Response:
    """Run a domain call in the next group commit; publish its events once committed."""
    view, events = await request.app[COMMITTER].submit(work)
    request.app[BUS].publish(events)
    return _json(view)


@routes.get("/api/v1/info")
async def info(request: web.Request) -> web.Response:
    ex = _ex(request)
    cfg = ex.cfg
    return _json({
        "exchange": ex.exchange_id, "network": cfg.network, "fee_bps": cfg.fee_bps,
        "operator": cfg.operator, "version": bitwrk.__version__, "time": ex.clock(),
        "articles": views.articles(ex),
        "article_pattern": "net.bitwrk/blender/<major>.<minor>/<512M|2G|8G|32G>[~trusted]",
        "bid_lifetime": cfg.timeouts.bid_lifetime, "max_body": cfg.max_body,
        "max_price": cfg.max_price, "totals": views.totals(ex),
        "payments": cfg.payments.enabled,
    })


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


@routes.post("/api/v1/bids")
async def place_bid(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"bid"}))
    ex = _ex(request)
    return await _commit(request, lambda: ex.place_bid(signed))


@routes.get("/api/v1/bids/{id}")
async def get_bid(request: web.Request) -> web.Response:
    return _json(_ex(request).bid(_path_id(request)))


@routes.post("/api/v1/bids/{id}/cancel")
async def cancel_bid(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"cancel_bid"}))
    if signed[0].get("bid") != _path_id(request):
        raise InvalidRequest("the signed bid id differs from the URL's", field="bid")
    ex = _ex(request)
    return await _commit(request, lambda: ex.cancel_bid(signed))


@routes.get("/api/v1/transactions/{id}")
async def get_transaction(request: web.Request) -> web.Response:
    return _json(views.transaction(_ex(request), _path_id(request)))


@routes.get("/api/v1/transactions/{id}/messages")
async def get_messages(request: web.Request) -> web.Response:
    return _json(views.messages(_ex(request), _path_id(request)))


@routes.get("/api/v1/transactions/{id}/movements")
async def get_tx_movements(request: web.Request) -> web.Response:
    txid = _path_id(request)
    _ex(request).transaction(txid)
    return _json(views.transaction_movements(_ex(request), txid))


@routes.post("/api/v1/transactions/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset(MESSAGES))
    if signed[0].get("txid") != _path_id(request):
        raise InvalidRequest("the signed txid differs from the URL's", field="txid")
    ex = _ex(request)
    return await _commit(request, lambda: trades.send_message(ex, signed))


def _address(request: web.Request, name: str = "address") -> str:
    address = request.match_info[name]
    check_address(address, _ex(request).cfg.network)
    return address


@routes.get("/api/v1/accounts/{address}")
async def get_account(request: web.Request) -> web.Response:
    return _json(views.account(_ex(request), _address(request)))


@routes.get("/api/v1/accounts/{address}/ledger")
async def get_ledger(request: web.Request) -> web.Response:
    q = request.query
    before = _int_arg(q.get("before"), "before")
    limit = _int_arg(q.get("limit"), "limit", 50) or 50
    return _json(views.ledger(_ex(request), _address(request), before, limit))


@routes.get("/api/v1/accounts/{address}/bids")
async def get_account_bids(request: web.Request) -> web.Response:
    q = request.query
    limit = _int_arg(q.get("limit"), "limit", 50) or 50
    return _json(views.bids_of(_ex(request), _address(request), q.get("state"), limit))


@routes.get("/api/v1/market/{article:.+}")
async def get_market(request: web.Request) -> web.Response:
    article = parse_article(request.match_info["article"]).id
    interval = _int_arg(request.query.get("interval"), "interval", 60) or 60
    limit = _int_arg(request.query.get("limit"), "limit", 500) or 500
    return _json(views.market(_ex(request), article, interval, limit))


@routes.post("/api/v1/relations")
async def post_relation(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"relation"}))
    ex = _ex(request)
    return await _commit(request, lambda: ex.relation(signed))


@routes.get("/api/v1/relations/{address}")
async def get_relations(request: web.Request) -> web.Response:
    return _json(views.relations_of(_ex(request), _address(request)))


@routes.post("/api/v1/deposits")
async def post_deposit(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"deposit"}))
    ex = _ex(request)
    return await _commit(request, lambda: ex.deposit(signed))


@routes.get("/api/v1/deposits/{uid}")
async def get_deposit(request: web.Request) -> web.Response:
    uid = request.match_info["uid"]
    return _json(views.require_found(_ex(request).deposit_view(uid), f"deposit {uid}"))


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one participant's bids/transactions/balances, or (no address)
    the public market stream of trades, book changes and transaction phases."""
    address = request.query.get("address")
    if address is not None:
        check_address(address, _ex(request).cfg.network)
    bus, cfg = request.app[BUS], request.app[CONFIG]
    sub = bus.subscribe(address)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)
        hello = json.dumps({"time": _ex(request).clock(), "address": address,
                            "epoch": bus.epoch})
        await response.write(f"event: hello\ndata: {hello}\n\n".encode())
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), cfg.keepalive_seconds)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            event_id, event = item
            data = json.dumps(event.data, default=str)
            await response.write(f"id: {event_id}\nevent: {event.kind}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        bus.unsubscribe(sub)
    return response
