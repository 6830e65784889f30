"""Issue 11's findings against the real app (aiohttp test server, real SQLite, real
signatures): each attack gets a clear 4xx and changes nothing, and money stays whole."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from service import create_app
from service.config import Limits
from tests.conftest import ARTICLE, Clock, Party, work_secret
from tests.service.conftest import Api, make_config
from tests.service.test_bad_input import refused

TRUSTED = ARTICLE + "~trusted"


async def api_with(aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock,
                   **overrides: Any) -> Api:
    return Api(await aiohttp_client(create_app(make_config(tmp_path, operator, **overrides),
                                               clock)), operator, clock)


# -- no 5xx from input -------------------------------------------------------------------


@pytest.mark.parametrize("action", [[], {}, ["bid"], {"bid": 1}, 1.5, None])
async def test_action_of_the_wrong_type_is_a_400(api: Api, buyer: Party, action: Any) -> None:
    body = {**api.signed(buyer, action="bid", type="buy", article=ARTICLE, price=1),
            "action": action}
    await refused(api, "/api/v1/bids", body, 400, "invalid_request")


@pytest.mark.parametrize("field", ["article", "type", "exchange", "address", "signature"])
async def test_lone_surrogate_in_any_string_is_a_400(api: Api, buyer: Party,
                                                     field: str) -> None:
    body = api.signed(buyer, action="bid", type="buy", article=ARTICLE, price=1)
    raw = json.dumps(body).replace(json.dumps(body[field]), '"x\\ud800"', 1).encode()
    await refused(api, "/api/v1/bids", None, 400, "invalid_request", raw=raw)


async def test_huge_integer_literal_is_a_400(api: Api, buyer: Party) -> None:
    body = api.signed(buyer, action="bid", type="buy", article=ARTICLE, price=1)
    raw = json.dumps(body).replace('"price": 1', '"price": ' + "9" * 5000).encode()
    await refused(api, "/api/v1/bids", None, 400, "invalid_request", raw=raw)


@pytest.mark.parametrize("before", ["9223372036854775808", "-1", "1e3", "²", "٣", " 1"])
async def test_out_of_range_query_integers_are_a_400(api: Api, buyer: Party,
                                                     before: str) -> None:
    data = await api.get(f"/api/v1/accounts/{buyer.address}/ledger", 400, before=before)
    assert data["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/api/v1/bids/²", "/api/v1/transactions/²",
                                  "/api/v1/transactions/²/messages", "/api/v1/withdrawals/²",
                                  "/tx/²", "/api/v1/bids/٣", "/api/v1/bids/99999999999999999999"])
async def test_non_ascii_digit_ids_are_a_404(api: Api, path: str) -> None:
    resp = await api.client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_trailing_newline_is_refused_everywhere(api: Api, buyer: Party,
                                                      seller: Party) -> None:
    deposit = api.signed(api.operator, action="deposit", uid="abcdefgh\n", ref="x",
                         account=buyer.address, amount=5, kind="play")
    await refused(api, "/api/v1/deposits", deposit, 400, "invalid_request")
    txid = await api.trade(buyer, seller)
    workhash, _, digest = work_secret()
    revision = (await api.get(f"/api/v1/transactions/{txid}"))["revision"]
    for party, action, fields in (
        (buyer, "work", {"workhash": workhash + "\n", "worksecrethash": digest}),
        (seller, "endpoint", {"workerurl": "http://127.0.0.1:9/w\n"}),
    ):
        body = api.signed(party, action=action, txid=txid, revision=revision, **fields)
        await refused(api, f"/api/v1/transactions/{txid}/messages", body, 400,
                      "invalid_request")
    resp = await api.client.get("/api/v1/market/" + ARTICLE + "%0A")
    assert resp.status in (400, 404)


# -- logic -------------------------------------------------------------------------------


async def test_self_trade_is_refused_and_the_resting_bid_stays(api: Api, buyer: Party) -> None:
    resting = await api.bid(buyer, "sell", 500)
    before = await api.balances(buyer)
    data = await api.bid(buyer, "buy", 600, status=409)
    assert (data["error"], data["resting"]) == ("self_trade", resting["id"])
    assert await api.balances(buyer) == before
    assert (await api.get(f"/api/v1/bids/{resting['id']}"))["state"] == "placed"
    other = Party()
    await api.fund(other, 10_000)
    assert (await api.bid(other, "buy", 600))["txid"] is not None
    await api.check_invariant()


async def test_revoking_trust_withdraws_resting_trusted_sells(api: Api, buyer: Party,
                                                              seller: Party) -> None:
    async def trust(enabled: int) -> Any:
        return await api.post("/api/v1/relations", api.signed(
            api.operator, action="relation", target=seller.address, type="trusts",
            enabled=enabled))

    await trust(1)
    trusted = await api.bid(seller, "sell", 500, article=TRUSTED)
    plain = await api.bid(seller, "sell", 500)
    await trust(0)
    assert (await api.get(f"/api/v1/bids/{trusted['id']}"))["state"] == "cancelled"
    assert (await api.get(f"/api/v1/bids/{plain['id']}"))["state"] == "placed"
    assert (await api.bid(buyer, "buy", 600, article=TRUSTED))["state"] == "placed"
    assert (await api.bid(seller, "sell", 500, article=TRUSTED, status=403))
    await api.check_invariant()


async def test_open_bids_per_address_are_capped(aiohttp_client: Any, tmp_path: Path,
                                                operator: Party, clock: Clock) -> None:
    api = await api_with(aiohttp_client, tmp_path, operator, clock,
                         limits=Limits(max_open_bids=3))
    griefer = Party()  # no money at all: sells block nothing
    for price in (10, 20, 30):
        await api.bid(griefer, "sell", price)
    data = await api.bid(griefer, "sell", 40, status=403)
    assert (data["error"], data["limit"]) == ("too_many_bids", 3)
    first = (await api.get(f"/api/v1/accounts/{griefer.address}/bids"))[-1]
    await api.post(f"/api/v1/bids/{first['id']}/cancel", api.signed(
        griefer, action="cancel_bid", bid=first["id"]))
    await api.bid(griefer, "sell", 40)  # room again after a cancel


async def test_fee_change_and_restart_keep_older_bids_matchable(
    aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock
) -> None:
    """A buy resting at 3 % is crossed after a restart at 0 % and after one at 10 %: the
    buyer's fee stays the one fixed at its entry, scaled to the ask."""
    first = await api_with(aiohttp_client, tmp_path, operator, clock, fee_bps=300)
    buyer = Party()
    await first.fund(buyer, 100_000)
    old = [await first.bid(buyer, "buy", 1000) for _ in range(2)]
    assert old[0]["fee"] == 30
    await first.client.close()
    for fee_bps, ask in ((0, 900), (1000, 1000)):
        again = await api_with(aiohttp_client, tmp_path, operator, clock, fee_bps=fee_bps)
        sold = await again.bid(Party(), "sell", ask)
        tx = await again.get(f"/api/v1/transactions/{sold['txid']}")
        assert (tx["price"], tx["fee"]) == (ask, -(-30 * ask // 1000))
        await again.check_invariant()
        await again.client.close()


async def test_a_locked_store_is_answered_busy_and_nothing_hangs(
    api: Api, buyer: Party
) -> None:
    """Another connection holds the write lock: the batch is answered 503 within the
    bounded busy timeout (not left hanging), GETs still answer, and after the lock is
    released the same requests succeed."""
    other: Any
    if api.ex.shared:  # PostgreSQL: another session locks the accounts against writes
        import psycopg

        assert api.ex.cfg.store_url is not None
        other = psycopg.connect(api.ex.cfg.store_url, autocommit=True)
        other.execute("BEGIN")
        other.execute("LOCK TABLE accounts IN EXCLUSIVE MODE")
    else:
        other = sqlite3.connect(str(api.ex.cfg.db_path), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        data = await api.bid(buyer, "buy", 100, status=503)
        assert data["error"] == "busy"
        assert time.monotonic() - started < 5.0
        assert (await api.get("/api/v1/info"))["exchange"] == api.exchange_id
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await api.bid(buyer, "buy", 100))["state"] == "placed"
    await api.check_invariant()


# -- reputation --------------------------------------------------------------------------


async def test_reputation_counts_and_the_bar_for_missed_endpoints(
    aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock
) -> None:
    api = await api_with(aiohttp_client, tmp_path, operator, clock,
                         limits=Limits(bar_after_misses=2, bar_seconds=600))
    buyer, seller = Party(), Party()
    await api.fund(buyer, 1_000_000)

    async def record() -> dict[str, Any]:
        account = await api.get(f"/api/v1/accounts/{seller.address}")
        return dict(account["reputation"], barred=account["barred_until"] is not None)

    assert await record() == {"finished": 0, "disputed": 0, "disputes_lost": 0,
                              "establish_timeouts": 0, "barred": False}
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    await api.msg(buyer, txid, "accept")
    for outcome in ("seller", "buyer"):
        txid = await api.trade(buyer, seller)
        await api.to_unverified(buyer, seller, txid)
        await api.msg(buyer, txid, "dispute", reason="bad pixels")
        await api.msg(api.operator, txid, "resolve", outcome=outcome)
    assert await record() == {"finished": 2, "disputed": 2, "disputes_lost": 1,
                              "establish_timeouts": 0, "barred": False}
    for _ in range(2):  # the seller never sends its endpoint
        txid = await api.trade(buyer, seller)
        workhash, _, digest = work_secret()
        await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
        clock.advance(api.ex.cfg.timeouts.establish + 1)
        api.retire()
    assert await record() == {"finished": 2, "disputed": 2, "disputes_lost": 1,
                              "establish_timeouts": 2, "barred": True}
    assert (await api.bid(seller, "sell", 100, status=403))["error"] == "barred"
    clock.advance(601)
    await api.bid(seller, "sell", 100)
    await api.check_invariant()


# -- private streams ---------------------------------------------------------------------


async def test_private_streams_need_the_owners_token(api: Api, buyer: Party,
                                                     seller: Party) -> None:
    resp = await api.client.get("/api/v1/events", params={"address": buyer.address})
    assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
    stolen = await api.post("/api/v1/events/token", api.signed(seller, action="events_token"))
    resp = await api.client.get("/api/v1/events",
                                params={"address": buyer.address, "token": stolen["token"]})
    assert resp.status == 403
    expired = await api.post("/api/v1/events/token", api.signed(buyer, action="events_token"))
    api.clock.advance(api.ex.cfg.limits.stream_token_lifetime + 1)
    resp = await api.client.get("/api/v1/events",
                                params={"address": buyer.address, "token": expired["token"]})
    assert resp.status == 403
    stream = await api.stream(buyer)
    assert stream.status == 200
    stream.close()


async def test_stream_caps(aiohttp_client: Any, tmp_path: Path, operator: Party,
                           clock: Clock) -> None:
    api = await api_with(aiohttp_client, tmp_path, operator, clock,
                         limits=Limits(max_streams=3, max_streams_per_address=1))
    party = Party()
    first = await api.stream(party)
    assert first.status == 200
    second = await api.stream(party)
    assert (second.status, (await second.json())["error"]) == (429, "too_many_streams")
    public = [await api.stream() for _ in range(2)]
    assert [s.status for s in public] == [200, 200]
    third = await api.stream()
    assert third.status == 429
    for s in (first, *public):
        s.close()


async def test_a_buyer_that_avoids_a_seller_passes_over_its_cheaper_ask(
        api: Api, buyer: Party, seller: Party) -> None:
    """A buyer caught a seller cheating: its signed ``avoids`` relation makes its bids pass
    over that seller's (cheapest) ask, also after a restart of the books, until revoked."""
    cheat = Party()
    cheap = await api.bid(cheat, "sell", 100)
    honest = await api.bid(seller, "sell", 300)
    await api.post("/api/v1/relations", api.signed(
        buyer, action="relation", target=cheat.address, type="avoids", enabled=1))
    first = await api.bid(buyer, "buy", 500)
    tx = await api.get(f"/api/v1/transactions/{first['txid']}")
    assert (tx["seller"], tx["sell_bid"], tx["price"]) == (seller.address, honest["id"], 300)
    api.ex.reload_books()  # as after a restart: the relation comes from the store
    assert (await api.bid(buyer, "buy", 500))["state"] == "placed"  # only the avoided ask
    assert (await api.get(f"/api/v1/bids/{cheap['id']}"))["state"] == "placed"
    await api.post("/api/v1/relations", api.signed(
        buyer, action="relation", target=cheat.address, type="avoids", enabled=0))
    again = await api.bid(buyer, "buy", 500)
    assert (await api.get(f"/api/v1/transactions/{again['txid']}"))["seller"] == cheat.address
    await api.check_invariant()
