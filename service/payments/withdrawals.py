"""Withdrawal requests and cancellations (pure domain). A request moves the amount out of
the available balance into a pending withdrawal; the user may cancel until the operator
exports it into a payout batch (:mod:`service.payments.payouts`)."""

from __future__ import annotations

from typing import Any

from bitwrk.errors import Forbidden, InsufficientFunds, InvalidRequest, NotFound, WrongPhase
from service import ledger
from service.events import Event
from service.exchange import Exchange, Signed, exact_fields, int_field

from .addresses import payout_script
from .deposits import require_enabled
from .errors import LimitExceeded

WITHDRAW_FIELDS = frozenset({"action", "exchange", "address", "nonce", "to", "amount"})
CANCEL_FIELDS = frozenset({"action", "exchange", "address", "nonce", "withdrawal"})
DAY = 86400.0
_SELECT = ("SELECT w.id, w.account, w.destination, w.amount, w.state, w.batch, b.txid,"
           " w.created, w.closed FROM withdrawals w LEFT JOIN payout_batches b"
           " ON b.id = w.batch")


def withdraw(ex: Exchange, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
    fields, document, signature = signed
    exact_fields(fields, WITHDRAW_FIELDS)
    cfg = ex.cfg.payments
    require_enabled(cfg)
    account = fields["address"]
    payout_script(fields["to"], ex.cfg.network)
    amount = int_field(fields, "amount", 1)
    if amount < cfg.min_withdrawal:
        raise InvalidRequest("amount is below the minimum withdrawal", field="amount",
                             minimum=cfg.min_withdrawal)
    now = ex.clock()
    with ex.write():
        ex._use_nonce(account, fields["nonce"])
        available = ex.balances(account)[0]
        if amount > available:
            raise InsufficientFunds("available balance does not cover the withdrawal",
                                    needed=amount, available=available)
        used = ex.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM withdrawals WHERE account = ?"
            " AND state != 'cancelled' AND created > ?", (account, now - DAY)).fetchone()[0]
        if used + amount > cfg.daily_limit:
            raise LimitExceeded("withdrawal would exceed the daily limit",
                                limit=cfg.daily_limit, used=int(used))
        wid = ex.db.execute(
            "INSERT INTO withdrawals(account, destination, amount, state, created, document,"
            " signature) VALUES (?,?,?,'pending',?,?,?)",
            (account, fields["to"], amount, now, document, signature)).lastrowid
        assert wid is not None
        record_movement(ex, ledger.withdraw(account, amount), now, wid)
    view = withdrawal(ex, wid)
    return view, [Event("withdrawal", view, to=(account,)), ex._account_event(account)]


def cancel(ex: Exchange, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
    fields = signed[0]
    exact_fields(fields, CANCEL_FIELDS)
    require_enabled(ex.cfg.payments)
    account, wid = fields["address"], int_field(fields, "withdrawal", 1)
    now = ex.clock()
    with ex.write():
        ex._use_nonce(account, fields["nonce"])
        row = withdrawal(ex, wid)
        if row["account"] != account:
            raise Forbidden("only the account that asked for a withdrawal can cancel it")
        claimed = ex.db.execute(
            "UPDATE withdrawals SET state = 'cancelled', closed = ? WHERE id = ?"
            " AND state = 'pending'", (now, wid)).rowcount
        if not claimed:
            raise WrongPhase(f"withdrawal is {row['state']}; only pending ones can be cancelled",
                             state=row["state"])
        record_movement(ex, ledger.cancel_withdrawal(account, row["amount"]), now, wid)
    view = withdrawal(ex, wid)
    return view, [Event("withdrawal", view, to=(account,)), ex._account_event(account)]


def record_movement(ex: Exchange, m: ledger.Movement, now: float, wid: int) -> None:
    """Record the movement and tag it with the withdrawal (Exchange.move knows no such ref;
    its INSERT is the last statement, so last_insert_rowid() is that movement)."""
    ex.move(m, now)
    ex.db.execute("UPDATE movements SET withdrawal_id = ? WHERE id = last_insert_rowid()",
                  (wid,))


def withdrawal(ex: Exchange, wid: int) -> dict[str, Any]:
    row = ex.db.execute(_SELECT + " WHERE w.id = ?", (wid,)).fetchone()
    if row is None:
        raise NotFound(f"no withdrawal {wid}")
    return dict(row)


def withdrawals_of(ex: Exchange, address: str, limit: int) -> list[dict[str, Any]]:
    rows = ex.db.execute(_SELECT + " WHERE w.account = ? ORDER BY w.id DESC LIMIT ?",
                         (address, max(1, min(limit, 200))))
    return [dict(r) for r in rows]
