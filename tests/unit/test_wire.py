"""Parsing the exchange's answers into wire records: unknown fields are ignored, a missing
or mistyped field is a WireError that names it (its path), and nothing is half-parsed."""

from __future__ import annotations

from typing import Any

import pytest

from bitwrk.errors import BitwrkError, WireError
from bitwrk.wire import Account, Bid, BidState, BidType, Ledger, Phase, Transaction

BID: dict[str, Any] = {"id": 7, "address": "bcrt1qbuyer", "type": "buy",
                       "article": "net.bitwrk/blender/4.2/2G", "price": 1000, "fee": 30,
                       "state": "matched", "created": 100.5, "expires": 400.5,
                       "closed": 101.0, "txid": 3}
TX: dict[str, Any] = {"id": 3, "article": "net.bitwrk/blender/4.2/2G", "buyer": "b",
                      "seller": "s", "buy_bid": 7, "sell_bid": 6, "price": 1000, "fee": 30,
                      "matched": 101.0, "phase": "WORKING", "revision": 3, "timeout": 900.0,
                      "retired": None, "workhash": "aa", "worksecrethash": "bb",
                      "workerurl": "https://s.example/tx/3", "encresulthash": None,
                      "receipt": None, "resultkey": None, "reason": None, "secretproof": "cc"}
ACCOUNT: dict[str, Any] = {
    "address": "b", "available": 5, "blocked": 0, "last_nonce": 9, "deposit_address": None,
    "pending_deposits": [{"txid": "ab", "vout": 1, "amount": 700, "confirmations": 0,
                          "required": 2}],
    "pending_withdrawals": 0, "barred_until": None,
    "reputation": {"finished": 1, "disputed": 0, "disputes_lost": 0, "establish_timeouts": 0}}


def test_records_parse_typed_and_round_trip() -> None:
    bid = Bid.from_json(BID)
    assert (bid.type, bid.state, bid.txid) == (BidType.BUY, BidState.MATCHED, 3)
    tx = Transaction.from_json(TX)
    assert tx.phase is Phase.WORKING and tx.messages is None and tx.retired is None
    account = Account.from_json(ACCOUNT)
    assert account.pending_deposits[0].required == 2 and account.reputation.finished == 1
    for cls, data in ((Bid, BID), (Transaction, TX), (Account, ACCOUNT)):
        assert cls.from_json(data).to_json() == data


def test_unknown_fields_are_ignored() -> None:
    assert Bid.from_json({**BID, "priority": "high"}) == Bid.from_json(BID)
    nested = {**ACCOUNT, "reputation": {**ACCOUNT["reputation"], "stars": 5}}
    assert Account.from_json(nested) == Account.from_json(ACCOUNT)


@pytest.mark.parametrize(("cls", "data", "field"), [
    (Bid, {k: v for k, v in BID.items() if k != "price"}, "Bid.price"),
    (Bid, {**BID, "price": "1000"}, "Bid.price"),
    (Bid, {**BID, "price": True}, "Bid.price"),  # a JSON true is no number of satoshi
    (Bid, {**BID, "price": 10.0}, "Bid.price"),
    (Bid, {**BID, "state": "lost"}, "Bid.state"),
    (Bid, {**BID, "txid": "3"}, "Bid.txid"),
    (Transaction, {**TX, "phase": "working"}, "Transaction.phase"),
    (Transaction, {**TX, "timeout": "soon"}, "Transaction.timeout"),
    (Transaction, {**TX, "messages": [{"id": 1}]}, "Transaction.messages[0].txid"),
    (Account, {**ACCOUNT, "reputation": None}, "Account.reputation"),
    (Account, {**ACCOUNT, "pending_deposits": {}}, "Account.pending_deposits"),
    (Account, {**ACCOUNT, "pending_deposits": [{"txid": "ab"}]},
     "Account.pending_deposits[0].vout"),
    (Ledger, {"address": "b", "movements": [{"id": 1}], "next_before": None},
     "Ledger.movements[0].time"),
])
def test_a_missing_or_mistyped_field_is_named(cls: Any, data: dict[str, Any],
                                              field: str) -> None:
    with pytest.raises(WireError) as caught:
        cls.from_json(data)
    assert caught.value.data["field"] == field and field in str(caught.value)
    assert isinstance(caught.value, BitwrkError)


def test_not_an_object_is_refused() -> None:
    for data in (None, [BID], "bid", 7):
        with pytest.raises(WireError, match="expected an object"):
            Bid.from_json(data)


def test_numbers_are_floats_where_times_are() -> None:
    bid = Bid.from_json({**BID, "created": 100, "closed": None})
    assert isinstance(bid.created, float) and bid.closed is None
