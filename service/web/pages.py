"""Handlers for the HTML pages; the data comes from the JSON API the pages call."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bitwrk.keys import check_address

from ..api import parse_path_id
from ..appkeys import EXCHANGE

STATIC = Path(__file__).with_name("static")
# Everything the pages use is served from here; inline scripts and other origins are refused.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
       " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

routes = web.RouteTableDef()


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={
        "Content-Security-Policy": CSP, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    })


@routes.get("/")
async def market_page(request: web.Request) -> web.FileResponse:
    return _page("market.html")


@routes.get("/tx/{id}")
async def transaction_page(request: web.Request) -> web.FileResponse:
    txid = parse_path_id(request.match_info["id"], "transaction")
    request.app[EXCHANGE].transaction(txid)  # NotFound for unknown ids
    return _page("tx.html")


@routes.get("/account/{address}")
async def account_page(request: web.Request) -> web.FileResponse:
    check_address(request.match_info["address"], request.app[EXCHANGE].cfg.network)
    return _page("account.html")


routes.static("/static", STATIC)
