"""Bids: blocking, price-time priority, trade price, surplus, expiry, cancellation, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service import create_app
from tests.conftest import ARTICLE, Clock, Party
from tests.service.conftest import Api, make_config


async def test_buy_blocks_price_plus_fee(api: Api, buyer: Party) -> None:
    bid = await api.bid(buyer, "buy", 1000)
    assert (bid["state"], bid["price"], bid["fee"]) == ("placed", 1000, 30)
    assert await api.balances(buyer) == (1_000_000 - 1030, 1030)
    await api.check_invariant()


async def test_fee_rounds_up_to_the_satoshi(api: Api, buyer: Party) -> None:
    bid = await api.bid(buyer, "buy", 101)
    assert bid["fee"] == 4  # 3.03 sat -> 4


async def test_sell_blocks_nothing(api: Api, seller: Party) -> None:
    await api.bid(seller, "sell", 500)
    assert await api.balances(seller) == (0, 0)


async def test_incoming_buy_trades_at_resting_sell_price(
    api: Api, buyer: Party, seller: Party
) -> None:
    await api.bid(seller, "sell", 800)
    bid = await api.bid(buyer, "buy", 1000)
    assert bid["state"] == "matched"
    tx = await api.get(f"/api/v1/transactions/{bid['txid']}")
    assert (tx["price"], tx["fee"], tx["phase"]) == (800, 24, "ESTABLISHING")
    # surplus (1000 + 30) - (800 + 24) released at once
    assert await api.balances(buyer) == (1_000_000 - 824, 824)
    await api.check_invariant()


async def test_resting_buy_trades_at_the_incoming_sellers_ask(
    api: Api, buyer: Party, seller: Party
) -> None:
    """Issue 10 item 6: the seller's ask, whichever bid rested; the surplus comes back."""
    await api.bid(buyer, "buy", 1000)
    assert await api.balances(buyer) == (1_000_000 - 1030, 1030)
    bid = await api.bid(seller, "sell", 700)
    tx = await api.get(f"/api/v1/transactions/{bid['txid']}")
    assert (tx["price"], tx["fee"]) == (700, 21)
    assert (tx["buyer"], tx["seller"]) == (buyer.address, seller.address)
    assert await api.balances(buyer) == (1_000_000 - 721, 721)
    await api.check_invariant()


async def test_price_then_time_priority(api: Api, buyer: Party) -> None:
    sellers = [Party() for _ in range(3)]
    a = await api.bid(sellers[0], "sell", 900)
    b = await api.bid(sellers[1], "sell", 800)  # better price, later
    c = await api.bid(sellers[2], "sell", 800)  # same price, even later
    first = await api.bid(buyer, "buy", 1000)
    second = await api.bid(buyer, "buy", 1000)
    third = await api.bid(buyer, "buy", 1000)
    sell_of = [(await api.get(f"/api/v1/transactions/{x['txid']}"))["sell_bid"]
               for x in (first, second, third)]
    assert sell_of == [b["id"], c["id"], a["id"]]


async def test_no_cross_no_trade_and_articles_are_separate(
    api: Api, buyer: Party, seller: Party
) -> None:
    await api.bid(seller, "sell", 1001)
    assert (await api.bid(buyer, "buy", 1000))["state"] == "placed"
    other = "net.bitwrk/blender/5.0/512M"
    assert (await api.bid(buyer, "buy", 5000, article=other))["state"] == "placed"
    market = await api.get(f"/api/v1/market/{ARTICLE}")
    assert market["bids"] == [{"price": 1000, "count": 1}]
    assert market["asks"] == [{"price": 1001, "count": 1}]


async def test_zero_price_is_legal(api: Api, seller: Party) -> None:
    buyer = Party()  # no funds needed for a free unit
    await api.bid(seller, "sell", 0)
    assert (await api.bid(buyer, "buy", 0))["state"] == "matched"


async def test_expiry_releases_the_block(api: Api, buyer: Party, seller: Party) -> None:
    bid = await api.bid(buyer, "buy", 1000)
    api.clock.advance(119)
    api.retire()
    assert (await api.get(f"/api/v1/bids/{bid['id']}"))["state"] == "placed"
    api.clock.advance(2)
    api.retire()
    assert (await api.get(f"/api/v1/bids/{bid['id']}"))["state"] == "expired"
    assert await api.balances(buyer) == (1_000_000, 0)
    # an expired bid never trades
    assert (await api.bid(seller, "sell", 1))["state"] == "placed"
    await api.check_invariant()


async def test_expired_but_not_yet_retired_bid_does_not_trade(
    api: Api, buyer: Party, seller: Party
) -> None:
    await api.bid(buyer, "buy", 1000)
    api.clock.advance(121)
    assert (await api.bid(seller, "sell", 1))["state"] == "placed"


async def test_cancel(api: Api, buyer: Party, seller: Party) -> None:
    bid = await api.bid(buyer, "buy", 1000)
    body = api.signed(seller, action="cancel_bid", bid=bid["id"])
    err = await api.post(f"/api/v1/bids/{bid['id']}/cancel", body, 403)
    assert err["error"] == "forbidden"
    body = api.signed(buyer, action="cancel_bid", bid=bid["id"])
    assert (await api.post(f"/api/v1/bids/{bid['id']}/cancel", body))["state"] == "cancelled"
    assert await api.balances(buyer) == (1_000_000, 0)
    body = api.signed(buyer, action="cancel_bid", bid=bid["id"])
    assert (await api.post(f"/api/v1/bids/{bid['id']}/cancel", body, 409))["error"] == (
        "wrong_phase"
    )
    assert (await api.bid(seller, "sell", 1))["state"] == "placed"  # gone from the book


async def test_books_are_rebuilt_after_restart(
    aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock
) -> None:
    config = make_config(tmp_path, operator)
    first = Api(await aiohttp_client(create_app(config, clock)), operator, clock)
    buyer, seller = Party(), Party()
    await first.fund(buyer, 10_000)
    resting = await first.bid(buyer, "buy", 1000)
    await first.client.close()
    second = Api(await aiohttp_client(create_app(config, clock)), operator, clock)
    assert second.exchange_id == first.exchange_id
    sold = await second.bid(seller, "sell", 900)
    assert sold["state"] == "matched"
    tx = await second.get(f"/api/v1/transactions/{sold['txid']}")
    assert (tx["buy_bid"], tx["price"]) == (resting["id"], 900)  # the ask


async def test_account_bids_and_ledger_pages(api: Api, buyer: Party) -> None:
    for price in range(1, 8):
        await api.bid(buyer, "buy", price)
    bids = await api.get(f"/api/v1/accounts/{buyer.address}/bids", state="placed")
    assert [b["price"] for b in bids] == list(range(7, 0, -1))
    page = await api.get(f"/api/v1/accounts/{buyer.address}/ledger", limit=5)
    assert len(page["movements"]) == 5 and page["next_before"] is not None
    rest = await api.get(f"/api/v1/accounts/{buyer.address}/ledger",
                         before=page["next_before"], limit=5)
    kinds = [m["kind"] for m in page["movements"] + rest["movements"]]
    assert kinds == ["bid"] * 7 + ["deposit"]
    for m in page["movements"]:
        assert m["available_delta"] + m["blocked_delta"] + m["fee_delta"] + m["world_delta"] == 0
