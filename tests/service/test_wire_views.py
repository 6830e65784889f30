"""The service's JSON and the client's wire records are one definition (bitwrk/wire.py):
every bid, transaction, message, account, movement and ledger page the real app answers
with, or pushes on the event stream, parses into its record and dumps back to exactly the
same JSON. A field the service sent but the record does not declare would be lost in that
round trip; one the record declares but the service does not send fails the parse."""

from __future__ import annotations

from typing import Any

from bitwrk.wire import Account, Bid, Ledger, Message, Movement, Transaction, WireRecord
from tests.conftest import Party
from tests.service.conftest import Api
from tests.service.test_events_market import read_events


def round_trips(cls: type[WireRecord], data: Any) -> WireRecord:
    record = cls.from_json(data)
    assert record.to_json() == data, (cls.__name__, data)
    return record


def add_pending_deposit(api: Api, party: Party) -> None:
    """A chain output seen but not yet confirmed, as the payments watcher records one."""
    now = api.clock()
    with api.ex.write():
        api.ex.db.execute(
            "INSERT INTO chain_outputs(txid, vout, address, account, chain, idx, amount,"
            " confirmations, state, first_seen, updated)"
            " VALUES (?, 0, 'bcrt1qexample', ?, 0, 0, 5000, 1, 'pending', ?, ?)",
            ("ab" * 32, party.address, now, now))


async def test_every_view_round_trips_through_its_record(
        api: Api, buyer: Party, seller: Party) -> None:
    stream = await api.stream(buyer)
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    answers = [await api.msg(buyer, txid, "accept")]
    unmatched = await api.bid(buyer, "buy", 10)  # rests, then cancelled: closed is set
    answers.append(await api.post(f"/api/v1/bids/{unmatched['id']}/cancel",
                                  api.signed(buyer, action="cancel_bid", bid=unmatched["id"])))
    add_pending_deposit(api, buyer)

    full = round_trips(Transaction, await api.get(f"/api/v1/transactions/{txid}"))
    assert isinstance(full, Transaction) and full.messages is not None
    assert len(full.messages) == 5 and full.phase == "FINISHED"
    for message in await api.get(f"/api/v1/transactions/{txid}/messages"):
        round_trips(Message, message)
    for movement in await api.get(f"/api/v1/transactions/{txid}/movements"):
        round_trips(Movement, movement)
    round_trips(Transaction, answers[0])  # the answer to a message: no messages in it
    round_trips(Bid, answers[1])
    for party in (buyer, seller):
        bids = await api.get(f"/api/v1/accounts/{party.address}/bids")
        for bid in bids:
            round_trips(Bid, bid)
            round_trips(Bid, await api.get(f"/api/v1/bids/{bid['id']}"))
        account = round_trips(Account, await api.get(f"/api/v1/accounts/{party.address}"))
        ledger = round_trips(Ledger, await api.get(f"/api/v1/accounts/{party.address}/ledger"))
        assert isinstance(account, Account) and isinstance(ledger, Ledger) and ledger.movements
    buyer_account = Account.from_json(await api.get(f"/api/v1/accounts/{buyer.address}"))
    assert [d.amount for d in buyer_account.pending_deposits] == [5000]
    seller_account = Account.from_json(await api.get(f"/api/v1/accounts/{seller.address}"))
    assert seller_account.reputation.finished == 1

    events = await read_events(stream, 100, timeout=5.0, until=lambda kind, data:
                               kind == "transaction" and data["phase"] == "FINISHED")
    kinds = {kind for kind, _ in events}
    assert {"bid", "transaction"} <= kinds, kinds
    for kind, data in events:
        if kind == "bid":
            round_trips(Bid, data)
        elif kind == "transaction":
            round_trips(Transaction, data)
    stream.close()


async def test_no_undeclared_transaction_column_is_shown(
        api: Api, buyer: Party, seller: Party) -> None:
    """Columns beyond the record (``buyersecret`` of old rows) never reach the API."""
    txid = await api.trade(buyer, seller)
    with api.ex.write():
        api.ex.db.execute("UPDATE transactions SET buyersecret = 'cd' WHERE id = ?", (txid,))
    shown = await api.get(f"/api/v1/transactions/{txid}")
    assert "buyersecret" not in shown
    assert set(shown) == {*Transaction.sent_fields(), "messages"}
