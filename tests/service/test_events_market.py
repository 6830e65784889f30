"""The events stream, market data, info and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.conftest import ARTICLE, Party
from tests.service.conftest import Api


async def read_events(resp: Any, count: int, timeout: float = 2.0,
                      until: Callable[[str, Any], bool] | None = None) -> list[tuple[str, Any]]:
    """``count`` events from an open stream, or fewer if ``until(kind, data)`` holds first."""
    events: list[tuple[str, Any]] = []
    kind = ""

    async def run() -> None:
        nonlocal kind
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if len(events) >= count or (until is not None and until(*events[-1])):
                    return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_both_parties_hear_the_match(api: Api, buyer: Party, seller: Party) -> None:
    b = await api.stream(buyer)
    s = await api.stream(seller)
    assert b.headers["Content-Type"].startswith("text/event-stream")
    assert (await read_events(b, 1))[0][0] == "hello"
    assert (await read_events(s, 1))[0][0] == "hello"
    await api.bid(seller, "sell", 900)
    bid = await api.bid(buyer, "buy", 1000)
    seller_events = await read_events(s, 2)
    assert seller_events[0] == ("bid", seller_events[0][1])
    assert seller_events[0][1]["state"] == "placed"
    assert seller_events[1][1]["state"] == "matched"
    assert seller_events[1][1]["txid"] == bid["txid"]
    buyer_events = await read_events(b, 3)
    kinds = [k for k, _ in buyer_events]
    assert kinds == ["bid", "transaction", "account"]
    assert buyer_events[1][1]["phase"] == "ESTABLISHING"
    assert buyer_events[2][1]["blocked"] == 927
    b.close()
    s.close()


async def test_market_stream_and_snapshot(api: Api, buyer: Party, seller: Party) -> None:
    stream = await api.client.get("/api/v1/events")
    await read_events(stream, 1)
    await api.bid(seller, "sell", 900)
    await api.bid(seller, "sell", 950)
    await api.bid(buyer, "buy", 1000)
    await api.bid(buyer, "buy", 10)
    heard = await read_events(stream, 7)
    notices = [data for kind, data in heard if kind == "account"]
    assert notices == [{"address": buyer.address}] * 2  # who changed, never balances
    events = [(k, d) for k, d in heard if k != "account"]
    assert [k for k, _ in events] == ["book", "book", "trade", "book", "book"]
    assert events[2][1]["price"] == 900
    market = await api.get(f"/api/v1/market/{ARTICLE}", interval=60)
    assert market["asks"] == [{"price": 950, "count": 1}]
    assert market["bids"] == [{"price": 10, "count": 1}]
    assert [t["price"] for t in market["trades"]] == [900]
    (candle,) = market["ohlc"]
    assert (candle["open"], candle["close"], candle["volume"]) == (900, 900, 1)
    info = await api.get("/api/v1/info")
    assert ARTICLE in info["articles"]
    stream.close()


async def test_ohlc_buckets(api: Api, buyer: Party) -> None:
    sellers = [Party() for _ in range(4)]
    for seller, price, wait in zip(sellers, (100, 300, 200, 50), (0, 10, 10, 60), strict=True):
        api.clock.advance(wait)
        await api.bid(seller, "sell", price)
        await api.bid(buyer, "buy", price)
    ohlc = (await api.get(f"/api/v1/market/{ARTICLE}", interval=60))["ohlc"]
    assert [(c["open"], c["high"], c["low"], c["close"], c["volume"]) for c in ohlc] == [
        (100, 300, 100, 200, 3), (50, 50, 50, 50, 1)]


async def test_info(api: Api) -> None:
    info = await api.get("/api/v1/info")
    assert info["exchange"].startswith("bitwrk-")
    assert (info["network"], info["fee_bps"], info["operator"]) == (
        "regtest", 300, api.operator.address)
    assert abs(info["time"] - api.clock()) < 1


async def test_openapi_describes_every_route(api: Api) -> None:
    doc = await api.get("/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    described = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    registered = set()
    for route in api.client.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        path = path.replace("{article:.+}", "{article}")
        if route.method != "HEAD" and path.startswith("/api/"):  # not the HTML pages
            registered.add((path, route.method))
    assert registered == described


async def test_market_view_is_cached_until_the_book_changes(api: Api, buyer: Party,
                                                            seller: Party) -> None:
    first = await api.get(f"/api/v1/market/{ARTICLE}")
    assert first == await api.get(f"/api/v1/market/{ARTICLE}")
    await api.bid(seller, "sell", 900)  # the book changed: never a stale view
    assert (await api.get(f"/api/v1/market/{ARTICLE}"))["asks"] == [{"price": 900, "count": 1}]
    await api.bid(buyer, "buy", 950)
    after = await api.get(f"/api/v1/market/{ARTICLE}")
    assert (after["asks"], [t["price"] for t in after["trades"]]) == ([], [900])
    api.clock.advance(api.ex.cfg.timeouts.bid_lifetime + 1)
    await api.bid(seller, "sell", 990)
    api.clock.advance(api.ex.cfg.timeouts.bid_lifetime + 1)  # it expires on its own
    assert (await api.get(f"/api/v1/market/{ARTICLE}"))["asks"] == []
