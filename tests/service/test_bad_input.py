"""Bad input: a clear 4xx JSON error, and nothing in the store changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bitwrk.keys import PrivateKey
from bitwrk.protocol import sign_request
from tests.conftest import ARTICLE, Party, receipt, work_secret
from tests.service.conftest import Api

TABLES = ("accounts", "bids", "transactions", "messages", "movements", "deposits", "relations")


def snapshot(api: Api) -> list[Any]:
    db = api.ex.db
    return [sorted(map(tuple, db.execute(f"SELECT * FROM {t}").fetchall()), key=repr)
            for t in TABLES]


@pytest.fixture
async def world(api: Api, buyer: Party, seller: Party) -> AsyncIterator[dict[str, Any]]:
    """A transaction in ESTABLISHING plus the parties, and the state before the bad request."""
    txid = await api.trade(buyer, seller)
    yield {"txid": txid, "buyer": buyer, "seller": seller}


async def refused(api: Api, path: str, body: Any, status: int, code: str,
                  raw: bytes | None = None) -> dict[str, Any]:
    before = snapshot(api)
    if raw is not None:
        resp = await api.client.post(path, data=raw,
                                     headers={"Content-Type": "application/json"})
    else:
        resp = await api.client.post(path, json=body)
    data: dict[str, Any] = await resp.json()
    assert (resp.status, data["error"]) == (status, code), data
    assert data["message"]
    assert snapshot(api) == before
    return data


def bid_body(api: Api, party: Party, **over: Any) -> dict[str, Any]:
    fields = {"action": "bid", "type": "buy", "article": ARTICLE, "price": 100, **over}
    return api.signed(party, **fields)


async def test_unsigned(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    del body["signature"]
    await refused(api, "/api/v1/bids", body, 400, "invalid_request")


async def test_badly_signed(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    body["signature"] = "AAAA" + body["signature"][4:]
    await refused(api, "/api/v1/bids", body, 401, "bad_signature")


async def test_tampered_after_signing(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    body["price"] = 1
    await refused(api, "/api/v1/bids", body, 401, "bad_signature")


async def test_signed_by_someone_else(api: Api, buyer: Party) -> None:
    thief = Party()
    body = {"action": "bid", "exchange": api.exchange_id, "address": buyer.address,
            "nonce": 10**15, "type": "buy", "article": ARTICLE, "price": 100}
    body["signature"] = thief.key.sign_message(
        "&".join(f"{k}={v}" for k, v in sorted(body.items()))
    )
    await refused(api, "/api/v1/bids", body, 401, "bad_signature")


async def test_replayed_and_equal_nonce(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    await api.post("/api/v1/bids", body)
    await refused(api, "/api/v1/bids", body, 409, "replayed")
    older = bid_body(api, buyer, nonce=body["nonce"] - 1)
    older = sign_request(buyer.key, {k: v for k, v in older.items() if k != "signature"})
    await refused(api, "/api/v1/bids", older, 409, "replayed")


async def test_wrong_exchange(api: Api, buyer: Party) -> None:
    body = buyer.sign("bitwrk-someotherexchange", action="bid", type="buy", article=ARTICLE,
                      price=100)
    await refused(api, "/api/v1/bids", body, 400, "wrong_exchange")


async def test_mainnet_address_on_regtest(api: Api) -> None:
    main = Party(PrivateKey.generate("mainnet"))
    await refused(api, "/api/v1/bids", bid_body(api, main), 400, "bad_address")


@pytest.mark.parametrize("article", ["fnord", "net.bitwrk/blender/5.0/3G",
                                     "net.bitwrk/blender/5.0/2G~trusted~trusted", "", 7])
async def test_unknown_articles(api: Api, buyer: Party, article: Any) -> None:
    await refused(api, "/api/v1/bids", bid_body(api, buyer, article=article), 400,
                  "unknown_article")


@pytest.mark.parametrize("price", [-1, "100", 2**63, 10**13, 1.5])
async def test_bad_prices(api: Api, buyer: Party, price: Any) -> None:
    if isinstance(price, float):  # not signable as a field value: build the body by hand
        body = bid_body(api, buyer)
        body["price"] = price
        await refused(api, "/api/v1/bids", body, 400, "invalid_request")
        return
    await refused(api, "/api/v1/bids", bid_body(api, buyer, price=price), 400, "bad_amount")


async def test_bool_price(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    body["price"] = True
    await refused(api, "/api/v1/bids", body, 400, "invalid_request")


async def test_buy_without_funds(api: Api) -> None:
    data = await refused(api, "/api/v1/bids", bid_body(api, Party(), price=1), 402,
                         "insufficient_funds")
    assert (data["needed"], data["available"]) == (2, 0)


@pytest.mark.parametrize("change", [{"type": "steal"}, {"extra": "x"}, {"action": "deposit"}])
async def test_wrong_fields(api: Api, buyer: Party, change: dict[str, Any]) -> None:
    await refused(api, "/api/v1/bids", bid_body(api, buyer, **change), 400, "invalid_request")


async def test_missing_field(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer)
    del body["article"]
    body = sign_request(buyer.key, {k: v for k, v in body.items() if k != "signature"})
    await refused(api, "/api/v1/bids", body, 400, "invalid_request")


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b"null", b'{"a": {"b": 1}}',
                                 b"[" * 100_00])
async def test_malformed_json(api: Api, raw: bytes) -> None:
    await refused(api, "/api/v1/bids", None, 400, "invalid_request", raw=raw)


async def test_oversized_body(api: Api, buyer: Party) -> None:
    body = bid_body(api, buyer, article="x" * 20_000)
    await refused(api, "/api/v1/bids", None, 413, "too_large", raw=json.dumps(body).encode())


async def test_stale_revision(api: Api, world: dict[str, Any]) -> None:
    txid, buyer = world["txid"], world["buyer"]
    workhash, _, digest = work_secret()
    await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    body = api.signed(world["seller"], action="endpoint", txid=txid, revision=0,
                      workerurl="http://127.0.0.1:9/w")
    data = await refused(api, f"/api/v1/transactions/{txid}/messages", body, 409,
                         "stale_revision")
    assert data["current"] == 1


async def test_replayed_message(api: Api, world: dict[str, Any]) -> None:
    txid, seller = world["txid"], world["seller"]
    body = api.signed(seller, action="endpoint", txid=txid, revision=0,
                      workerurl="http://127.0.0.1:9/w")
    await api.post(f"/api/v1/transactions/{txid}/messages", body)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 409, "replayed")


async def test_message_from_the_wrong_party(api: Api, world: dict[str, Any]) -> None:
    txid = world["txid"]
    workhash, _, digest = work_secret()
    body = api.signed(world["seller"], action="work", txid=txid, revision=0,
                      workhash=workhash, worksecrethash=digest)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 403, "forbidden")
    body = api.signed(Party(), action="cancel", txid=txid, revision=0)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 403, "forbidden")


async def test_message_in_the_wrong_phase(api: Api, world: dict[str, Any]) -> None:
    txid = world["txid"]
    for party, action in ((world["buyer"], "accept"), (world["seller"], "reject")):
        fields = {"reason": "x"} if action == "reject" else {}
        body = api.signed(party, action=action, txid=txid, revision=0, **fields)
        await refused(api, f"/api/v1/transactions/{txid}/messages", body, 409, "wrong_phase")


async def test_duplicate_work(api: Api, world: dict[str, Any]) -> None:
    txid, buyer = world["txid"], world["buyer"]
    workhash, _, digest = work_secret()
    await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    body = api.signed(buyer, action="work", txid=txid, revision=1, workhash=workhash,
                      worksecrethash=digest)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 409, "wrong_phase")


@pytest.mark.parametrize("fields", [
    {"workhash": "AB" * 32, "worksecrethash": "00" * 32},
    {"workhash": "00" * 31, "worksecrethash": "00" * 32},
    {"workhash": "00" * 32},
    {"workhash": "00" * 32, "worksecrethash": "00" * 32, "price": 1},
])
async def test_bad_work_fields(api: Api, world: dict[str, Any], fields: dict[str, Any]) -> None:
    txid = world["txid"]
    body = api.signed(world["buyer"], action="work", txid=txid, revision=0, **fields)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 400, "invalid_request")


@pytest.mark.parametrize("url", ["ftp://x/y", "http://", "javascript:alert(1)",
                                 "http://h/" + "x" * 300, "http://h/w?x=1", "http://h/w#f",
                                 "http://user:pw@h/w", "http://evil@127.0.0.1/w",
                                 "http://h:0/w", "http://h:99999/w", "http://h/a b",
                                 "https:/h/w", "http://h\\@x/", "http://h/w\n"])
async def test_bad_worker_url(api: Api, world: dict[str, Any], url: str) -> None:
    txid = world["txid"]
    body = api.signed(world["seller"], action="endpoint", txid=txid, revision=0, workerurl=url)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 400, "invalid_request")


async def test_wrong_buyer_secret_and_forged_receipt(api: Api, world: dict[str, Any]) -> None:
    txid, buyer, seller = world["txid"], world["buyer"], world["seller"]
    workhash, secret, digest = work_secret()
    await api.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
    await api.msg(seller, txid, "endpoint", workerurl="http://127.0.0.1:9/w")
    path = f"/api/v1/transactions/{txid}/messages"
    body = api.signed(seller, action="received", txid=txid, revision=2, secretproof="11" * 32)
    await refused(api, path, body, 400, "invalid_request")
    await api.msg(seller, txid, "received", secretproof=secret)
    enc = "ab" * 32
    body = api.signed(seller, action="result", txid=txid, revision=3, encresulthash=enc,
                      receipt=api.receipt(seller, seller, txid, enc), resultkey="cd" * 64)
    await refused(api, path, body, 400, "invalid_request")
    # the buyer's signature over the bare hash (the old receipt) is refused too
    body = api.signed(seller, action="result", txid=txid, revision=3, encresulthash=enc,
                      receipt=buyer.key.sign_message(enc), resultkey="cd" * 64)
    await refused(api, path, body, 400, "invalid_request")
    # a receipt for another seller or another transaction does not verify here
    for other_seller, other_txid in ((buyer, txid), (seller, txid + 1)):
        forged = receipt(buyer.key, api.ex.exchange_id, other_txid, other_seller.address, enc)
        body = api.signed(seller, action="result", txid=txid, revision=3, encresulthash=enc,
                          receipt=forged, resultkey="cd" * 64)
        await refused(api, path, body, 400, "invalid_request")
    # the right receipt with a result key in clear (not sealed to the buyer) is refused
    body = api.signed(seller, action="result", txid=txid, revision=3, encresulthash=enc,
                      receipt=api.receipt(buyer, seller, txid, enc), resultkey="cd" * 32)
    await refused(api, path, body, 400, "invalid_request")


async def test_unknown_action_and_mismatched_ids(api: Api, world: dict[str, Any]) -> None:
    txid, buyer = world["txid"], world["buyer"]
    body = api.signed(buyer, action="pay_me", txid=txid, revision=0)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 400, "invalid_request")
    body = api.signed(buyer, action="cancel", txid=txid + 1, revision=0)
    await refused(api, f"/api/v1/transactions/{txid}/messages", body, 400, "invalid_request")
    body = api.signed(buyer, action="cancel", txid=999, revision=0)
    await refused(api, "/api/v1/transactions/999/messages", body, 404, "not_found")


async def test_deposits_need_the_operator(api: Api, buyer: Party) -> None:
    body = api.signed(buyer, action="deposit", uid="free-money-1", account=buyer.address,
                      amount=10**8, kind="play", ref="")
    await refused(api, "/api/v1/deposits", body, 403, "forbidden")


async def test_deposit_is_idempotent_by_uid(api: Api, buyer: Party) -> None:
    fields = {"action": "deposit", "uid": "once-only-42", "account": buyer.address,
              "amount": 5000, "kind": "play", "ref": "t"}
    await api.post("/api/v1/deposits", api.signed(api.operator, **fields))
    before = await api.totals()
    again = await api.post("/api/v1/deposits", api.signed(api.operator, **fields))
    assert again["duplicate"] is True and await api.totals() == before
    other = api.signed(api.operator, **{**fields, "amount": 6000})
    await refused(api, "/api/v1/deposits", other, 409, "conflict")


MAINNET_ADDRESS = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"


@pytest.mark.parametrize("change", [{"amount": 0}, {"amount": -5}, {"uid": "short"},
                                    {"kind": "coupon"}, {"account": MAINNET_ADDRESS},
                                    {"ref": "has space"}])
async def test_bad_deposits(api: Api, buyer: Party, change: dict[str, Any]) -> None:
    fields = {"action": "deposit", "uid": "bad-deposit-1", "account": buyer.address,
              "amount": 5000, "kind": "play", "ref": "t", **change}
    code = {"amount": "bad_amount", "account": "bad_address"}.get(next(iter(change)),
                                                                   "invalid_request")
    if change.get("amount") == 0:
        code = "invalid_request"
    await refused(api, "/api/v1/deposits", api.signed(api.operator, **fields), 400, code)


async def test_trusted_article_needs_the_operators_trust(api: Api, seller: Party) -> None:
    trusted = ARTICLE + "~trusted"
    body = api.signed(seller, action="bid", type="sell", article=trusted, price=100)
    await refused(api, "/api/v1/bids", body, 403, "forbidden")
    await api.post("/api/v1/relations", api.signed(api.operator, action="relation",
                                                   target=seller.address, type="trusts",
                                                   enabled=1))
    assert (await api.bid(seller, "sell", 100, article=trusted))["state"] == "placed"
    rel = await api.get(f"/api/v1/relations/{api.operator.address}")
    assert rel[0]["target"] == seller.address and rel[0]["enabled"] is True


async def test_get_errors_are_json(api: Api) -> None:
    for path, status in (("/api/v1/bids/0", 404), ("/api/v1/bids/x", 404),
                         ("/api/v1/transactions/77", 404), ("/api/v1/nothing", 404),
                         ("/api/v1/accounts/notanaddress", 400),
                         ("/api/v1/market/fnord", 400),
                         (f"/api/v1/accounts/{Party().address}/ledger?limit=x", 400)):
        resp = await api.client.get(path)
        assert resp.status == status, path
        assert "error" in await resp.json()
    resp = await api.client.put("/api/v1/bids")
    assert resp.status == 405 and (await resp.json())["error"]
