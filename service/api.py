"""HTTP handlers: parse → call the domain (no awaits there) → publish events → respond."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

import bitwrk
from bitwrk.articles import parse_article
from bitwrk.errors import BodyCutOff, InvalidRequest, NotFound, TooLarge, WrongExchange
from bitwrk.keys import check_address
from bitwrk.protocol import canonical_document, verify_request
from bitwrk.wire import BidState

from . import store, streams, trades, views
from .appkeys import BUS, COMMITTER, CONFIG, EXCHANGE
from .errors import RequestTimeout
from .events import Event
from .exchange import DEPOSIT_UID, Exchange, Signed
from .openapi import openapi_document
from .phases import MESSAGES

routes = web.RouteTableDef()
BID_STATES = tuple(str(s) for s in BidState)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


MAX_INT_DIGITS = 40  # far above any int64 field; the literal is refused before int() runs
_DECIMAL = re.compile(r"-?[0-9]{1,19}")
_PATH_ID = re.compile(r"[0-9]{1,19}")
CHAIN_UID = re.compile(r"btc:[0-9a-f]{64}:[0-9]{1,10}")  # credited Bitcoin outputs
MAX_LIMIT = 1000  # page sizes; views clamp further


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS:
        raise InvalidRequest(f"integer literal longer than {MAX_INT_DIGITS} digits")
    return int(literal)


def _check_text(body: dict[str, Any]) -> None:
    """Lone surrogates (``"\\ud800"`` is valid JSON) cannot be UTF-8 encoded: refuse them
    before anything signs, quotes or stores the text."""
    for key, value in body.items():
        for text in (key, value):
            if isinstance(text, str) and not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidRequest("strings must be valid Unicode (no lone surrogates)",
                                         field=str(key)[:40].encode("utf-8", "replace").decode()
                                         ) from exc


async def read_body(request: web.Request) -> bytes:
    """The request body, bounded in size and in time (a half-sent body is answered 408)."""
    cfg = request.app[CONFIG]
    try:
        return await asyncio.wait_for(request.read(), cfg.limits.body_timeout)
    except web.HTTPRequestEntityTooLarge as exc:
        raise TooLarge("request body too large", limit=cfg.max_body) from exc
    except TimeoutError as exc:
        raise RequestTimeout("the request body did not arrive in time",
                             seconds=cfg.limits.body_timeout) from exc
    except ConnectionResetError as exc:  # the client went away mid-body: not our error
        raise BodyCutOff() from exc


async def read_signed(request: web.Request, actions: frozenset[str]) -> Signed:
    """The verified body of a signed request: (fields, document, signature)."""
    raw = await read_body(request)
    try:
        body = json.loads(raw, parse_int=_bounded_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError too
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    _check_text(body)
    action = body.get("action")
    if not isinstance(action, str) or action not in actions:
        raise InvalidRequest(f"action must be one of {sorted(actions)}", field="action")
    exchange = request.app[EXCHANGE]
    if body.get("exchange") != exchange.exchange_id:
        raise WrongExchange("signed for another exchange", expected=exchange.exchange_id)
    verify_request(body)
    check_address(body["address"], exchange.cfg.network)
    fields = {k: v for k, v in body.items() if k != "signature"}
    return fields, canonical_document(fields), str(body["signature"])


def _int_arg(value: str | None, name: str, default: int | None = None,
             low: int = 1, high: int = 2**63 - 1) -> int | None:
    """A query parameter as an int in [low, high] (ASCII digits only), or ``default``."""
    if value is None:
        return default
    if not _DECIMAL.fullmatch(value) or not low <= int(value) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return int(value)


def limit_arg(request: web.Request, default: int) -> int:
    return _int_arg(request.query.get("limit"), "limit", default, 1, MAX_LIMIT) or default


def parse_path_id(text: str, name: str = "id") -> int:
    """A positive 64-bit id from ASCII digits only (``"²".isdigit()`` is true, ``int`` fails)."""
    if not _PATH_ID.fullmatch(text) or not 0 < int(text) < 2**63:
        raise NotFound(f"no such {name}: {text[:40]!r}")
    return int(text)


def _path_id(request: web.Request, name: str = "id") -> int:
    return parse_path_id(request.match_info[name], name)


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
        "article_pattern": "net.bitwrk/blender/<major>.<minor>/<512M|2G|8G|32G>[~gpu][~trusted]",
        "bid_lifetime": cfg.timeouts.bid_lifetime, "max_body": cfg.max_body,
        "max_price": cfg.max_price, "totals": views.totals(ex),
        "payments": cfg.payments.enabled, "limits": dataclasses.asdict(cfg.limits),
        "relay": cfg.relay_url,
    })


@routes.get("/api/v1/health")
async def health(request: web.Request) -> web.Response:
    """200 when this process's store connection answers, 503 when not: for a load
    balancer in front of several exchange processes (docs/postgresql.md)."""
    ex = _ex(request)
    kind = "postgresql" if ex.shared else "sqlite"
    try:
        ex.db.execute("SELECT 1").fetchone()
    except store.ERRORS as exc:
        return _json({"ok": False, "store": kind, "error": str(exc)[:200]}, status=503)
    return _json({"ok": True, "store": kind, "subscribers": request.app[BUS].subscribers})


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
    limit = limit_arg(request, 50)
    return _json(views.ledger(_ex(request), _address(request), before, limit))


@routes.get("/api/v1/accounts/{address}/bids")
async def get_account_bids(request: web.Request) -> web.Response:
    q = request.query
    limit = limit_arg(request, 50)
    state = q.get("state")
    if state is not None and state not in BID_STATES:
        raise InvalidRequest(f"state must be one of {list(BID_STATES)}", field="state")
    return _json(views.bids_of(_ex(request), _address(request), state, limit))


@routes.get("/api/v1/market/{article:.+}")
async def get_market(request: web.Request) -> web.Response:
    article = parse_article(request.match_info["article"]).id
    interval = _int_arg(request.query.get("interval"), "interval", 60) or 60
    limit = limit_arg(request, 500)
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
    if not DEPOSIT_UID.fullmatch(uid) and not CHAIN_UID.fullmatch(uid):
        raise NotFound(f"no deposit {uid[:80].encode('utf-8', 'replace').decode()!r}")
    return _json(views.require_found(_ex(request).deposit_view(uid), f"deposit {uid}"))


routes.get("/api/v1/events")(streams.events)


@routes.post("/api/v1/events/token")
async def post_stream_token(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"events_token"}))
    ex = _ex(request)
    return await _commit(request, lambda: streams.issue_token(ex, signed))
