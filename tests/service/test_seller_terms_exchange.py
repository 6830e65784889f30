"""Buy bids that ask for a seller record or exclude sellers (issue 10 item 4), through the
real app: the matcher passes over asks the terms refuse, in both directions, after a
restart too; bad terms are a 400 that changes nothing; money is neither made nor lost."""

from __future__ import annotations

from typing import Any

import pytest

from bitwrk.keys import PrivateKey
from bitwrk.protocol import MAX_EXCLUDED
from tests.conftest import Party
from tests.service.conftest import Api


async def establish(api: Api, seller: Party, trades: int = 1, price: int = 10) -> None:
    """Give ``seller`` a public record: ``trades`` finished trades with a one-off buyer."""
    client = Party()
    await api.fund(client, 10 * price * trades + 100)
    for _ in range(trades):
        txid = await api.trade(client, seller, price)
        await api.to_unverified(client, seller, txid)
        await api.msg(client, txid, "accept")
    account = await api.get(f"/api/v1/accounts/{seller.address}")
    assert account["reputation"]["finished"] >= trades


async def buy(api: Api, buyer: Party, price: int, status: int = 200, **terms: Any) -> Any:
    body = api.signed(buyer, action="bid", type="buy", article=_article(), price=price,
                      **terms)
    return await api.post("/api/v1/bids", body, status)


def _article() -> str:
    from tests.conftest import ARTICLE

    return ARTICLE


async def seller_of(api: Api, bid: dict[str, Any]) -> str:
    assert bid["state"] == "matched", bid
    tx = await api.get(f"/api/v1/transactions/{bid['txid']}")
    return str(tx["seller"])


async def test_a_buyer_requiring_a_record_passes_over_a_fresh_sellers_cheaper_ask(
        api: Api, buyer: Party) -> None:
    fresh, known = Party(), Party()
    await establish(api, known)
    cheap = await api.bid(fresh, "sell", 100)
    await api.bid(known, "sell", 300)
    picky = await buy(api, buyer, 500, min_finished=1)
    assert await seller_of(api, picky) == known.address
    tx = await api.get(f"/api/v1/transactions/{picky['txid']}")
    assert tx["price"] == 300  # the ask it traded with
    assert (await api.get(f"/api/v1/bids/{cheap['id']}"))["state"] == "placed"
    plain = await api.bid(buyer, "buy", 500)  # no terms: price-time priority as ever
    assert await seller_of(api, plain) == fresh.address
    await api.check_invariant()


async def test_with_only_fresh_sellers_the_bid_waits_for_an_established_one(
        api: Api, buyer: Party) -> None:
    """Not refused, not matched and cancelled again and again: the bid rests; a fresh
    seller's new ask passes it by; the established seller's next ask takes it."""
    fresh, known = Party(), Party()
    await establish(api, known)
    await api.bid(fresh, "sell", 100)
    before = await api.balances(buyer)
    picky = await buy(api, buyer, 500, min_finished=1)
    assert picky["state"] == "placed"
    assert (await api.balances(buyer))[1] == before[1] + picky["price"] + picky["fee"]
    other = Party()
    await api.fund(other, 10_000)
    lower = await api.bid(other, "buy", 400)  # a plain buy below the picky one
    assert await seller_of(api, lower) == fresh.address  # the fresh ask went to it
    again = await api.bid(fresh, "sell", 100)
    assert again["state"] == "placed"  # passes over the picky resting buy
    api.ex.reload_books()  # as after a restart: the terms come back from the signed document
    again2 = await api.bid(Party(), "sell", 50)
    assert again2["state"] == "placed"
    sold = await api.bid(known, "sell", 450)
    assert sold["state"] == "matched"
    tx = await api.get(f"/api/v1/transactions/{sold['txid']}")
    assert (tx["buy_bid"], tx["seller"], tx["price"]) == (picky["id"], known.address, 450)
    await api.check_invariant()


async def test_a_seller_who_lost_too_many_disputes_is_passed_over(
        api: Api, buyer: Party, operator: Party) -> None:
    loser, known = Party(), Party()
    await establish(api, loser)
    await establish(api, known)
    client = Party()
    await api.fund(client, 1000)
    txid = await api.trade(client, loser, 10)
    await api.to_unverified(client, loser, txid)
    await api.msg(client, txid, "dispute", reason="black frame")
    await api.msg(operator, txid, "resolve", outcome="buyer")  # 1 lost of 2 decided
    await api.bid(loser, "sell", 100)
    await api.bid(known, "sell", 300)
    strict = await buy(api, buyer, 500, max_lost_pct=49)
    assert await seller_of(api, strict) == known.address
    lenient = await buy(api, buyer, 500, max_lost_pct=50)
    assert await seller_of(api, lenient) == loser.address
    await api.check_invariant()


async def test_an_excluded_seller_is_never_matched(api: Api, buyer: Party) -> None:
    cheat, honest = Party(), Party()
    await api.bid(cheat, "sell", 100)
    excluding: dict[str, Any] = {
        "exclude": f"{cheat.address},{PrivateKey.generate('regtest').address}"}
    resting = await buy(api, buyer, 500, **excluding)
    assert resting["state"] == "placed"
    assert (await api.bid(cheat, "sell", 90))["state"] == "placed"  # the other way round
    sold = await api.bid(honest, "sell", 300)
    tx = await api.get(f"/api/v1/transactions/{sold['txid']}")
    assert (tx["buy_bid"], tx["buyer"]) == (resting["id"], buyer.address)
    second = await buy(api, buyer, 500, **excluding)
    assert second["state"] == "placed"  # only the excluded seller's asks are left
    await api.check_invariant()


async def test_a_barred_sellers_resting_ask_is_not_matched(
        aiohttp_client: Any, tmp_path: Any, operator: Party) -> None:
    """A bar stops new sells; an ask placed before it must not trade either."""
    from service import create_app
    from service.config import Limits, Timeouts
    from tests.conftest import Clock
    from tests.service.conftest import make_config

    clock = Clock()
    config = make_config(tmp_path, operator, timeouts=Timeouts(establish=10),
                         limits=Limits(bar_after_misses=1, bar_seconds=600))
    api = Api(await aiohttp_client(create_app(config, clock)), operator, clock)
    seller, buyer = Party(), Party()
    await api.fund(buyer, 100_000)
    await api.bid(seller, "sell", 100)
    waiting = await api.bid(seller, "sell", 100)
    txid = await api.trade(buyer, seller, 100)
    assert txid  # matched the first ask; the seller never sends its endpoint
    clock.advance(11)
    api.retire()
    account = await api.get(f"/api/v1/accounts/{seller.address}")
    assert account["barred_until"] is not None
    assert (await api.get(f"/api/v1/bids/{waiting['id']}"))["state"] == "placed"
    assert (await api.bid(buyer, "buy", 100))["state"] == "placed"
    await api.check_invariant()


@pytest.mark.parametrize("terms", [
    {"min_finished": -1}, {"min_finished": 10**7}, {"min_finished": "1"},
    {"max_lost_pct": 101}, {"max_lost_pct": -5}, {"exclude": ""}, {"exclude": "not-an-address"},
    {"exclude": PrivateKey.generate("mainnet").address},  # another network's address
    {"exclude": ",".join(PrivateKey.generate("regtest").address
                         for _ in range(MAX_EXCLUDED + 1))},
    {"min_seller": 1},  # not a bid field
])
async def test_bad_terms_are_a_400_that_changes_nothing(api: Api, buyer: Party,
                                                        terms: dict[str, Any]) -> None:
    before = await api.balances(buyer)
    answer = await buy(api, buyer, 500, status=400, **terms)
    assert answer["error"] in ("invalid_request", "bad_address")
    assert await api.balances(buyer) == before
    bids = await api.get(f"/api/v1/accounts/{buyer.address}/bids")
    assert bids == []
    await api.check_invariant()


async def test_a_sell_bid_cannot_carry_terms(api: Api, seller: Party) -> None:
    body = api.signed(seller, action="bid", type="sell", article=_article(), price=10,
                      min_finished=1)
    answer = await api.post("/api/v1/bids", body, 400)
    assert "only a buy bid" in answer["message"]


async def test_terms_altered_in_transit_are_refused(api: Api, buyer: Party) -> None:
    body = api.signed(buyer, action="bid", type="buy", article=_article(), price=500,
                      min_finished=5)
    answer = await api.post("/api/v1/bids", {**body, "min_finished": 0}, 401)
    assert answer["error"] == "bad_signature"
    stripped = {k: v for k, v in body.items() if k != "min_finished"}
    await api.post("/api/v1/bids", stripped, 401)
