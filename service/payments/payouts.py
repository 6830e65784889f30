"""Payout batches: every pending withdrawal in one unsigned PSBT (BIP174) that spends the
exchange's confirmed outputs, for the operator to sign offline; marked paid when the
transaction is seen (``payouts confirm TXID`` or the watcher).

All inputs are P2WPKH, so signing does not change the txid: the id stored at export is the
id of the transaction the operator broadcasts (BIP141: the txid excludes witness data).
"""

from __future__ import annotations

import re
from typing import Any

from embit import script
from embit.psbt import PSBT, DerivationPath
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from bitwrk.errors import InsufficientFunds, InvalidRequest, NotFound
from service import ledger
from service.events import Event
from service.exchange import Exchange

from .addresses import payout_script
from .deposits import require_enabled
from .derivation import CHANGE, AccountKey, address_at, parse_xpub
from .withdrawals import record_movement, withdrawal

DUST = 294  # a P2WPKH output below this is non-standard (Core's GetDustThreshold at 3 sat/vB)
RBF_SEQUENCE = 0xFFFFFFFD  # BIP125: the operator can bump the fee
SPENDABLE = ("credited", "below_minimum", "change")
_TXID = re.compile(r"^[0-9a-f]{64}$")


def vsize(inputs: int, outputs: int) -> int:
    """Virtual size upper bound: 10.5 vB overhead, 68 vB per P2WPKH input, 43 vB per output
    (the largest standard one, P2TR/P2WSH); https://bitcoinops.org/en/tools/calc-size/."""
    return (21 + 136 * inputs + 86 * outputs + 1) // 2


def export_batch(ex: Exchange, fee_rate: int | None = None) -> dict[str, Any] | None:
    """Put every pending withdrawal into a new batch; None when there is none."""
    cfg = ex.cfg.payments
    account = parse_xpub(require_enabled(cfg))
    rate = fee_rate or cfg.fee_rate
    now = ex.clock()
    with ex.write():
        pending = ex.db.execute("SELECT id, account, destination, amount FROM withdrawals"
                                " WHERE state = 'pending' ORDER BY id").fetchall()
        if not pending:
            return None
        total = sum(int(w["amount"]) for w in pending)
        inputs, fee = _select(ex, total, len(pending) + 1, rate)
        change = sum(int(u["amount"]) for u in inputs) - total - fee
        if change < DUST:
            fee, change = fee + change, 0
        batch_id = ex.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM payout_batches"
                                 ).fetchone()[0]
        change_index: int | None = None
        if change:
            change_index = int(ex.db.execute("SELECT COALESCE(MAX(change_index) + 1, 0)"
                                             " FROM payout_batches").fetchone()[0])
        psbt = _psbt(ex, account, inputs, pending, change, change_index)
        txid = psbt.tx.txid().hex()
        ex.db.execute(
            "INSERT INTO payout_batches(id, txid, psbt, state, total, network_fee, change_index,"
            " created) VALUES (?,?,?,'exported',?,?,?,?)",
            (batch_id, txid, psbt.to_string(), total, fee, change_index, now))
        for w in pending:
            ex.db.execute("UPDATE withdrawals SET state = 'exported', batch = ? WHERE id = ?",
                          (batch_id, w["id"]))
        for u in inputs:
            ex.db.execute("UPDATE chain_outputs SET spent_batch = ? WHERE txid = ? AND vout = ?",
                          (batch_id, u["txid"], u["vout"]))
        if change_index is not None:
            address = address_at(account, CHANGE, change_index, ex.cfg.network)
            ex.db.execute(
                "INSERT INTO chain_outputs(txid, vout, address, account, chain, idx, amount,"
                " state, first_seen, updated) VALUES (?,?,?,NULL,?,?,?,'change_pending',?,?)",
                (txid, len(pending), address, CHANGE, change_index, change, now, now))
    return batch(ex, batch_id)


def _select(ex: Exchange, total: int, outputs: int, rate: int) -> tuple[list[Any], int]:
    """Largest-first coin selection over the exchange's confirmed, unspent outputs."""
    rows = ex.db.execute(
        "SELECT txid, vout, amount, chain, idx FROM chain_outputs WHERE spent_batch IS NULL"
        f" AND state IN {SPENDABLE} ORDER BY amount DESC, txid, vout").fetchall()
    chosen: list[Any] = []
    for row in rows:
        chosen.append(row)
        fee = rate * vsize(len(chosen), outputs)
        if sum(int(u["amount"]) for u in chosen) >= total + fee:
            return chosen, fee
    have = sum(int(u["amount"]) for u in chosen)
    raise InsufficientFunds("the exchange's confirmed outputs do not cover the payouts",
                            needed=total + rate * vsize(max(1, len(chosen)), outputs),
                            available=have)


def _psbt(ex: Exchange, account: AccountKey, inputs: list[Any], pending: list[Any],
          change: int, change_index: int | None) -> Any:
    network = ex.cfg.network
    vout = [TransactionOutput(int(w["amount"]), payout_script(w["destination"], network))
            for w in pending]
    if change and change_index is not None:
        key = account.child(CHANGE, change_index)
        vout.append(TransactionOutput(change, script.p2wpkh(key)))
    vin = [TransactionInput(bytes.fromhex(u["txid"]), int(u["vout"]), sequence=RBF_SEQUENCE)
           for u in inputs]
    psbt = PSBT(Transaction(version=2, vin=vin, vout=vout, locktime=0))
    for scope, u in zip(psbt.inputs, inputs, strict=True):
        key = account.child(int(u["chain"]), int(u["idx"]))
        scope.witness_utxo = TransactionOutput(int(u["amount"]), script.p2wpkh(key))
        scope.bip32_derivations[key.get_public_key()] = DerivationPath(
            account.fingerprint, account.path(int(u["chain"]), int(u["idx"])))
    if change and change_index is not None:
        key = account.child(CHANGE, change_index)
        psbt.outputs[-1].bip32_derivations[key.get_public_key()] = DerivationPath(
            account.fingerprint, account.path(CHANGE, change_index))
    return psbt


def confirm(ex: Exchange, txid: str) -> tuple[dict[str, Any], list[Event]]:
    """Mark the batch whose transaction is ``txid`` paid (idempotent)."""
    txid = txid.strip().lower()
    if not _TXID.fullmatch(txid):
        raise InvalidRequest("a transaction id is 64 hex digits", field="txid")
    now = ex.clock()
    with ex.write():
        row = ex.db.execute("SELECT id FROM payout_batches WHERE txid = ?", (txid,)).fetchone()
        if row is None:
            raise NotFound(f"no payout batch with transaction {txid}")
        claimed = ex.db.execute("UPDATE payout_batches SET state = 'paid', paid = ?"
                                " WHERE id = ? AND state = 'exported'", (now, row[0])).rowcount
        if not claimed:
            return batch(ex, row[0]), []
        paid = ex.db.execute("SELECT id, account FROM withdrawals WHERE batch = ?"
                             " AND state = 'exported'", (row[0],)).fetchall()
        for w in paid:
            ex.db.execute("UPDATE withdrawals SET state = 'paid', closed = ? WHERE id = ?",
                          (now, w["id"]))
            record_movement(ex, ledger.withdrawal_paid(w["account"]), now, w["id"])
        ex.db.execute("UPDATE chain_outputs SET state = 'change', updated = ?"
                      " WHERE txid = ? AND state = 'change_pending'", (now, txid))
    events = [Event("withdrawal", withdrawal(ex, w["id"]), to=(w["account"],)) for w in paid]
    return batch(ex, row[0]), events


def batch(ex: Exchange, batch_id: int) -> dict[str, Any]:
    row = ex.db.execute("SELECT * FROM payout_batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        raise NotFound(f"no payout batch {batch_id}")
    ids = [r[0] for r in ex.db.execute("SELECT id FROM withdrawals WHERE batch = ? ORDER BY id",
                                       (batch_id,))]
    return {**dict(row), "withdrawals": ids}


def exported(ex: Exchange) -> list[str]:
    """Transaction ids of batches waiting to be seen on chain."""
    return [str(r[0]) for r in ex.db.execute(
        "SELECT txid FROM payout_batches WHERE state = 'exported' ORDER BY id")]


def overview(ex: Exchange) -> dict[str, Any]:
    pending = ex.db.execute("SELECT id, account, destination, amount, created FROM withdrawals"
                            " WHERE state = 'pending' ORDER BY id").fetchall()
    batches = ex.db.execute("SELECT id, txid, state, total, network_fee, created, paid"
                            " FROM payout_batches ORDER BY id DESC LIMIT 50").fetchall()
    return {"pending": [dict(r) for r in pending], "batches": [dict(r) for r in batches]}
