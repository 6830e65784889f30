"""Every phase transition, every timeout outcome, and the money each one moves."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import Party, sealed_key, work_secret
from tests.service.conftest import Api

FUNDS = 1_000_000
COST = 1030  # price 1000 + 3 % fee


async def tx_of(api: Api, txid: int) -> dict[str, object]:
    tx: dict[str, object] = await api.get(f"/api/v1/transactions/{txid}")
    return tx


async def test_happy_path_pays_seller_and_fee(api: Api, buyer: Party, seller: Party) -> None:
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    tx = await api.msg(buyer, txid, "accept")
    assert tx["phase"] == "FINISHED" and tx["retired"] is not None and tx["timeout"] is None
    assert await api.balances(buyer) == (FUNDS - COST, 0)
    assert await api.balances(seller) == (1000, 0)
    assert (await api.totals())["fees"] == 30
    full = await tx_of(api, txid)
    trail = [(m["action"], m["pre_phase"], m["post_phase"]) for m in full["messages"]]  # type: ignore[attr-defined]
    assert trail == [
        ("work", "ESTABLISHING", "ESTABLISHING"),
        ("endpoint", "ESTABLISHING", "TRANSMITTING"),
        ("received", "TRANSMITTING", "WORKING"),
        ("result", "WORKING", "UNVERIFIED"),
        ("accept", "UNVERIFIED", "FINISHED"),
    ]
    assert full["revision"] == 5
    movements = await api.get(f"/api/v1/transactions/{txid}/movements")
    assert [m["kind"] for m in movements] == ["settle"]
    await api.check_invariant()


async def test_endpoint_before_work_also_establishes(
    api: Api, buyer: Party, seller: Party
) -> None:
    txid = await api.trade(buyer, seller)
    await api.msg(seller, txid, "endpoint", workerurl="https://seller.example:8443/w/1")
    workhash, _, digest = work_secret()
    tx = await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    assert tx["phase"] == "TRANSMITTING"
    assert tx["timeout"] == pytest.approx(api.clock() + 120)


async def test_timeouts_follow_the_phases(api: Api, buyer: Party, seller: Party) -> None:
    txid = await api.trade(buyer, seller)
    assert (await tx_of(api, txid))["timeout"] == pytest.approx(api.clock() + 60)
    await api.to_working(buyer, seller, txid)
    assert (await tx_of(api, txid))["timeout"] == pytest.approx(api.clock() + 900)  # 2G class
    enc = hashlib.sha256(b"x").hexdigest()
    await api.msg(seller, txid, "result", encresulthash=enc,
                  receipt=api.receipt(buyer, seller, txid, enc), resultkey=sealed_key())
    assert (await tx_of(api, txid))["timeout"] == pytest.approx(api.clock() + 900)


@pytest.mark.parametrize("stage", ["establishing", "transmitting"])
async def test_buyer_cancels_early_and_is_refunded(
    api: Api, buyer: Party, seller: Party, stage: str
) -> None:
    txid = await api.trade(buyer, seller)
    if stage == "transmitting":
        workhash, _, digest = work_secret()
        await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
        await api.msg(seller, txid, "endpoint", workerurl="http://127.0.0.1:9/w")
    tx = await api.msg(buyer, txid, "cancel")
    assert tx["phase"] == "CANCELLED"
    assert await api.balances(buyer) == (FUNDS, 0)
    await api.check_invariant()


async def test_cancel_is_refused_once_working(api: Api, buyer: Party, seller: Party) -> None:
    txid = await api.trade(buyer, seller)
    await api.to_working(buyer, seller, txid)
    err = await api.msg(buyer, txid, "cancel", status=409)
    assert err["error"] == "wrong_phase"
    assert await api.balances(buyer) == (FUNDS - COST, COST)


@pytest.mark.parametrize("stage", ["transmitting", "working"])
async def test_seller_rejects_work_and_buyer_is_refunded(
    api: Api, buyer: Party, seller: Party, stage: str
) -> None:
    txid = await api.trade(buyer, seller)
    workhash, secret, digest = work_secret()
    await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    await api.msg(seller, txid, "endpoint", workerurl="http://127.0.0.1:9/w")
    if stage == "working":
        await api.msg(seller, txid, "received", secretproof=secret)
    tx = await api.msg(seller, txid, "reject", reason="scene needs 64 GB")
    assert (tx["phase"], tx["reason"]) == ("WORK_DISPUTED", "scene needs 64 GB")
    assert await api.balances(buyer) == (FUNDS, 0)
    assert await api.balances(seller) == (0, 0)


@pytest.mark.parametrize(("outcome", "phase"), [("seller", "FINISHED"), ("buyer", "CANCELLED")])
async def test_disputed_result_stays_blocked_until_operator_resolves(
    api: Api, buyer: Party, seller: Party, outcome: str, phase: str
) -> None:
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    tx = await api.msg(buyer, txid, "dispute", reason="black frame")
    assert (tx["phase"], tx["timeout"], tx["retired"]) == ("RESULT_DISPUTED", None, None)
    api.clock.advance(10 * 3600)
    api.retire()
    assert await api.balances(buyer) == (FUNDS - COST, COST)  # no deadline: still blocked
    err = await api.msg(buyer, txid, "resolve", status=403, outcome="buyer")
    assert err["error"] == "forbidden"
    tx = await api.msg(api.operator, txid, "resolve", outcome=outcome)
    assert tx["phase"] == phase
    paid = outcome == "seller"
    assert await api.balances(buyer) == ((FUNDS - COST) if paid else FUNDS, 0)
    assert await api.balances(seller) == (1000 if paid else 0, 0)
    await api.check_invariant()


@pytest.mark.parametrize(
    ("stage", "wait", "phase", "seller_paid"),
    [
        ("establishing", 61, "EXPIRED", False),
        ("half_established", 61, "EXPIRED", False),
        ("transmitting", 121, "EXPIRED", False),
        ("working", 901, "EXPIRED", False),
        ("unverified", 901, "FINISHED", True),
    ],
)
async def test_timeout_outcomes(
    api: Api, buyer: Party, seller: Party, stage: str, wait: float, phase: str,
    seller_paid: bool,
) -> None:
    txid = await api.trade(buyer, seller)
    workhash, secret, digest = work_secret()
    if stage != "establishing":
        await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    if stage in ("transmitting", "working", "unverified"):
        await api.msg(seller, txid, "endpoint", workerurl="http://127.0.0.1:9/w")
    if stage in ("working", "unverified"):
        await api.msg(seller, txid, "received", secretproof=secret)
    if stage == "unverified":
        enc = hashlib.sha256(b"r").hexdigest()
        await api.msg(seller, txid, "result", encresulthash=enc,
                      receipt=api.receipt(buyer, seller, txid, enc), resultkey=sealed_key())
    api.clock.advance(wait - 2)
    api.retire()
    assert (await tx_of(api, txid))["retired"] is None
    api.clock.advance(2)
    # past the deadline but not yet retired: messages are refused
    err = await api.msg(buyer, txid, "accept" if stage == "unverified" else "cancel", 409)
    assert err["error"] == "wrong_phase"
    api.retire()
    tx = await tx_of(api, txid)
    assert (tx["phase"], tx["timeout"]) == (phase, None)
    assert tx["messages"][-1]["action"] == "timeout"  # type: ignore[index]
    assert await api.balances(seller) == (1000 if seller_paid else 0, 0)
    assert await api.balances(buyer) == ((FUNDS - COST) if seller_paid else FUNDS, 0)
    await api.check_invariant()


async def test_background_task_retires_on_time(
    aiohttp_client: object, tmp_path: object, operator: Party
) -> None:
    """The real clock and the real retirement task: a 0.3 s bid expires by itself."""
    import asyncio
    from pathlib import Path

    from service import create_app
    from service.config import Timeouts
    from tests.conftest import Clock
    from tests.service.conftest import make_config

    config = make_config(Path(str(tmp_path)), operator, timeouts=Timeouts(bid_lifetime=0.3))
    client = await aiohttp_client(create_app(config))  # type: ignore[operator]
    api = Api(client, operator, Clock())
    buyer = Party()
    await api.fund(buyer, 5000)
    bid = await api.bid(buyer, "buy", 100)
    for _ in range(50):
        await asyncio.sleep(0.05)
        if (await api.get(f"/api/v1/bids/{bid['id']}"))["state"] == "expired":
            break
    assert (await api.get(f"/api/v1/bids/{bid['id']}"))["state"] == "expired"
    assert await api.balances(buyer) == (5000, 0)
