"""Deposit addresses and crediting chain outputs (pure domain: no awaits, no I/O beyond
the store). Exactly once per output: ``chain_outputs`` is keyed by ``txid:vout``, the credit
flips ``credited`` 0 → 1 in the same transaction that writes the deposit and its movement,
and the deposit's uid ``btc:txid:vout`` is a primary key besides."""

from __future__ import annotations

import logging
from typing import Any

from bitwrk.wire import PendingDeposit, wire_view
from service import ledger
from service.config import PaymentConfig
from service.events import Event
from service.exchange import Exchange, Signed, exact_fields

from .chain import SeenOutput, WatchSet
from .derivation import RECEIVE, address_at, parse_xpub
from .errors import PaymentsDisabled, RateLimited

log = logging.getLogger("bitwrk.payments")
ADDRESS_FIELDS = frozenset({"action", "exchange", "address", "nonce"})
FINAL = ("credited", "below_minimum")


def require_enabled(cfg: PaymentConfig) -> str:
    if cfg.xpub is None:
        raise PaymentsDisabled("this exchange takes no Bitcoin payments (no xpub configured)")
    return cfg.xpub


def issue_address(ex: Exchange, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
    """The account's newest deposit address while nothing has paid it yet, otherwise a new
    one (new ones are rate-limited per account and in total, so nobody can burn through the
    operator's address gap)."""
    fields = signed[0]
    exact_fields(fields, ADDRESS_FIELDS)
    cfg = ex.cfg.payments
    xpub = require_enabled(cfg)
    account, now = fields["address"], ex.clock()
    with ex.write():
        ex._use_nonce(account, fields["nonce"])
        row = ex.db.execute(
            "SELECT idx, address FROM deposit_addresses a WHERE account = ? AND NOT EXISTS"
            " (SELECT 1 FROM chain_outputs o WHERE o.address = a.address)"
            " ORDER BY idx DESC LIMIT 1", (account,)).fetchone()
        if row is not None:
            return address_view(int(row[0]), str(row[1]), account, fresh=False), []
        _check_rate(ex, cfg, account, now)
        index = ex.db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM deposit_addresses"
                              ).fetchone()[0]
        address = address_at(parse_xpub(xpub), RECEIVE, index, ex.cfg.network)
        ex.db.execute("INSERT INTO deposit_addresses(idx, address, account, created)"
                      " VALUES (?,?,?,?)", (index, address, account, now))
    return address_view(index, address, account, fresh=True), []


def _check_rate(ex: Exchange, cfg: PaymentConfig, account: str, now: float) -> None:
    since = now - cfg.address_window
    mine, first = ex.db.execute(
        "SELECT COUNT(*), MIN(created) FROM deposit_addresses WHERE account = ? AND created > ?",
        (account, since)).fetchone()
    total = ex.db.execute("SELECT COUNT(*) FROM deposit_addresses WHERE created > ?",
                          (since,)).fetchone()[0]
    if mine >= cfg.address_rate or total >= cfg.address_rate_total:
        wait = cfg.address_window if first is None else first + cfg.address_window - now
        raise RateLimited("too many new deposit addresses; use the last one or wait",
                          retry_after=max(1, round(wait)))


def address_view(index: int, address: str, account: str, fresh: bool) -> dict[str, Any]:
    return {"account": account, "address": address, "index": index, "fresh": fresh,
            "uri": f"bitcoin:{address}"}


def watch_set(ex: Exchange) -> WatchSet:
    """Every issued deposit address, the highest index and the oldest creation time."""
    rows = ex.db.execute("SELECT address, idx, created FROM deposit_addresses ORDER BY idx"
                         ).fetchall()
    return WatchSet(tuple(str(r[0]) for r in rows), int(rows[-1][1]) if rows else -1,
                    min(float(r[2]) for r in rows) if rows else None)


def apply_scan(ex: Exchange, outputs: list[SeenOutput]) -> list[Event]:
    """Record what the backend sees now; credit what has enough confirmations. A complete
    scan is expected: a pending output it no longer shows was dropped by a reorg."""
    cfg, now = ex.cfg.payments, ex.clock()
    touched: set[str] = set()
    seen: set[tuple[str, int]] = set()
    with ex.write():
        for out in outputs:
            if (out.txid, out.vout) in seen:
                continue  # the same output listed twice (Core lists per address and label)
            seen.add((out.txid, out.vout))
            account = _record(ex, cfg, out, now)
            if account is not None:
                touched.add(account)
        touched |= _drop_missing(ex, seen, now)
    return [ex._account_event(a) for a in sorted(touched)]


def _record(ex: Exchange, cfg: PaymentConfig, out: SeenOutput, now: float) -> str | None:
    owner = ex.db.execute("SELECT account, idx FROM deposit_addresses WHERE address = ?",
                          (out.address,)).fetchone()
    if owner is None:
        return None
    account = str(owner[0])
    row = ex.db.execute("SELECT * FROM chain_outputs WHERE txid = ? AND vout = ?",
                        (out.txid, out.vout)).fetchone()
    if row is None:
        ex.db.execute(
            "INSERT INTO chain_outputs(txid, vout, address, account, chain, idx, amount,"
            " confirmations, block_hash, state, first_seen, updated)"
            " VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?)",
            (out.txid, out.vout, out.address, account, RECEIVE, owner[1], out.amount,
             out.confirmations, out.block_hash, now, now))
    elif (row["address"], row["amount"]) != (out.address, out.amount):
        log.error("backend reports %s:%d as %d sat to %s, stored as %d sat to %s; ignored",
                  out.txid, out.vout, out.amount, out.address, row["amount"], row["address"])
        return None
    elif row["state"] in FINAL:
        ex.db.execute("UPDATE chain_outputs SET confirmations = ?, block_hash = ?, updated = ?"
                      " WHERE txid = ? AND vout = ?",
                      (out.confirmations, out.block_hash, now, out.txid, out.vout))
        if out.confirmations <= 0:
            log.error("credited output %s:%d left the best chain (confirmations %d)",
                      out.txid, out.vout, out.confirmations)
        return None
    state = "dropped" if out.confirmations < 0 else "pending"
    ex.db.execute("UPDATE chain_outputs SET confirmations = ?, block_hash = ?, state = ?,"
                  " updated = ? WHERE txid = ? AND vout = ?",
                  (out.confirmations, out.block_hash, state, now, out.txid, out.vout))
    if out.confirmations >= cfg.confirmations:
        _settle(ex, cfg, out, account, now)
    return account


def _settle(ex: Exchange, cfg: PaymentConfig, out: SeenOutput, account: str, now: float) -> None:
    if out.amount < cfg.min_deposit:
        ex.db.execute("UPDATE chain_outputs SET state = 'below_minimum' WHERE txid = ?"
                      " AND vout = ?", (out.txid, out.vout))
        log.warning("deposit %s:%d of %d sat is below the minimum %d: recorded, not credited",
                    out.txid, out.vout, out.amount, cfg.min_deposit)
        return
    uid = f"btc:{out.txid}:{out.vout}"
    flipped = ex.db.execute(
        "UPDATE chain_outputs SET credited = 1, state = 'credited', deposit_uid = ?"
        " WHERE txid = ? AND vout = ? AND credited = 0", (uid, out.txid, out.vout)).rowcount
    if flipped != 1:
        return
    ex.db.execute(
        "INSERT INTO deposits(uid, account, amount, kind, ref, time, document, signature)"
        " VALUES (?,?,?,'bitcoin',?,?,?,'')",
        (uid, account, out.amount, f"{out.txid}:{out.vout}", now,
         f"chain:{out.txid}:{out.vout}:{out.amount}:{out.confirmations}"))
    ex.move(ledger.deposit(account, out.amount), now, deposit_uid=uid)
    log.info("credited %d sat to %s from %s:%d", out.amount, account, out.txid, out.vout)


def _drop_missing(ex: Exchange, seen: set[tuple[str, int]], now: float) -> set[str]:
    rows = ex.db.execute("SELECT txid, vout, account FROM chain_outputs"
                         " WHERE state = 'pending' AND account IS NOT NULL").fetchall()
    dropped: set[str] = set()
    for txid, vout, account in rows:
        if (txid, vout) not in seen:
            ex.db.execute("UPDATE chain_outputs SET state = 'dropped', confirmations = 0,"
                          " block_hash = NULL, updated = ? WHERE txid = ? AND vout = ?",
                          (now, txid, vout))
            log.warning("pending deposit %s:%d vanished from the chain (reorg?)", txid, vout)
            dropped.add(str(account))
    return dropped


def account_payments(ex: Exchange, address: str) -> dict[str, Any]:
    """The payment part of an account view: newest deposit address, pending deposits with
    their confirmations, and pending withdrawals."""
    row = ex.db.execute("SELECT address FROM deposit_addresses WHERE account = ?"
                        " ORDER BY idx DESC LIMIT 1", (address,)).fetchone()
    pending = ex.db.execute(
        "SELECT txid, vout, amount, confirmations FROM chain_outputs WHERE account = ?"
        " AND state = 'pending' ORDER BY first_seen", (address,)).fetchall()
    withdrawing = ex.db.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM withdrawals WHERE account = ?"
        " AND state IN ('pending', 'exported')", (address,)).fetchone()[0]
    required = ex.cfg.payments.confirmations
    return {
        "deposit_address": None if row is None else str(row[0]),
        "pending_deposits": [wire_view(PendingDeposit, {**dict(r), "required": required})
                             for r in pending],
        "pending_withdrawals": int(withdrawing),
    }


def deposits_of(ex: Exchange, address: str, limit: int) -> list[dict[str, Any]]:
    rows = ex.db.execute(
        "SELECT txid, vout, address, amount, confirmations, state, credited, deposit_uid,"
        " first_seen, updated FROM chain_outputs WHERE account = ?"
        " ORDER BY first_seen DESC LIMIT ?", (address, max(1, min(limit, 200))))
    return [{**dict(r), "credited": bool(r["credited"])} for r in rows]
