"""Transaction messages and retirement (deadlines), on top of :class:`Exchange`.

Each function is one SQLite transaction: the phase change, the message record, the ledger
movement and the revision bump commit together or not at all.
"""

from __future__ import annotations

from typing import Any

from bitwrk.errors import Forbidden, InvalidRequest, NotFound, StaleRevision, WrongPhase
from bitwrk.wire import Phase

from . import ledger, reputation, views
from .events import Event
from .exchange import Exchange, Signed, int_field
from .phases import OPEN_PHASES, Settlement, TxView, on_timeout, required_fields, step
from .store import Row

ENVELOPE = frozenset({"action", "exchange", "address", "nonce", "txid", "revision"})


def role_of(ex: Exchange, row: Row, address: str, action: str) -> str:
    """Which party ``address`` is in this transaction for ``action``."""
    if action == "resolve" and address == ex.cfg.operator:
        return "operator"
    roles = [r for r in ("buyer", "seller") if row[r] == address]
    if not roles:
        raise Forbidden("only the buyer and the seller may send transaction messages")
    want = "buyer" if action in ("work", "accept", "dispute", "cancel") else "seller"
    return want if want in roles else roles[0]


def send_message(ex: Exchange, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
    fields, document, signature = signed
    action = fields.get("action")
    required_fields(str(action))  # unknown actions fail before anything is read
    txid = int_field(fields, "txid", 1)
    revision = int_field(fields, "revision", 0)
    address = fields["address"]
    now = ex.clock()
    with ex.write():
        ex._use_nonce(address, fields["nonce"])
        row = ex.db.execute("SELECT * FROM transactions WHERE id = ?" + ex.for_update,
                            (txid,)).fetchone()
        if row is None:
            raise NotFound(f"no transaction {txid}")
        role = role_of(ex, row, address, str(action))
        if row["revision"] != revision:
            raise StaleRevision(
                "the message is for another revision", current=row["revision"], sent=revision
            )
        if row["timeout"] is not None and now >= row["timeout"]:
            raise WrongPhase("the transaction has timed out", phase=row["phase"])
        tx = TxView(row["buyer"], row["seller"], row["article"].split("/")[-1].split("~")[0],
                    Phase(row["phase"]), row["workhash"], row["worksecrethash"], row["workerurl"],
                    txid, ex.exchange_id)
        result = step(tx, role, str(action), fields, now, ex.cfg.timeouts)
        if "encresulthash" in result.updates:
            _refuse_reused_result(ex, txid, result.updates["encresulthash"])
        timeout = row["timeout"] if result.keep_deadline else result.timeout
        _change(ex, row, result.phase, result.updates, timeout, now)
        if result.settlement is not None:
            _settle(ex, row, result.settlement, now)
        _record(ex, row, now, address, role, str(action), result.phase, document, signature)
    if timeout is not None:
        ex.on_deadline(timeout)
    return _after(ex, row)


def _refuse_reused_result(ex: Exchange, txid: int, encresulthash: str) -> None:
    """One sealed result is paid once: a hash another trade already published is refused
    (its receipt is bound to that trade anyway; this also stops a seller re-selling it)."""
    other = ex.db.execute(
        "SELECT id FROM transactions WHERE encresulthash = ? AND id != ? LIMIT 1",
        (encresulthash, txid),
    ).fetchone()
    if other is not None:
        raise InvalidRequest("this sealed result was already delivered in another trade",
                             field="encresulthash", txid=other[0])


def _change(
    ex: Exchange, row: Row, phase: Phase, updates: dict[str, str],
    timeout: float | None, now: float,
) -> None:
    reputation.record(ex.db, row, phase, now, ex.cfg.limits)  # the seller's public record
    retired = now if phase not in OPEN_PHASES and phase != Phase.RESULT_DISPUTED else None
    columns = {**updates, "phase": str(phase), "timeout": timeout, "retired": retired}
    assignments = ", ".join(f"{c} = ?" for c in columns)
    ex.db.execute(
        f"UPDATE transactions SET {assignments}, revision = revision + 1 WHERE id = ?",
        (*columns.values(), row["id"]),
    )


def _settle(ex: Exchange, row: Row, outcome: Settlement, now: float) -> None:
    price, fee = row["price"], row["fee"]
    if outcome == Settlement.PAY_SELLER:
        movement = ledger.settle(row["buyer"], row["seller"], price, fee)
    else:
        movement = ledger.refund(row["buyer"], price + fee)
    ex.move(movement, now, txid=row["id"])


def _record(
    ex: Exchange, row: Row, now: float, sender: str, role: str, action: str,
    post: Phase, document: str | None, signature: str | None,
) -> None:
    ex.db.execute(
        "INSERT INTO messages(txid, time, sender, role, action, pre_phase, post_phase,"
        " revision, document, signature) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (row["id"], now, sender, role, action, row["phase"], str(post), row["revision"] + 1,
         document, signature),
    )


def _after(ex: Exchange, row: Row) -> tuple[dict[str, Any], list[Event]]:
    view = views.public_transaction(ex, row["id"])
    parties = (row["buyer"], row["seller"])
    events = [Event("transaction", view, to=parties, public=True)]
    if view["retired"] is not None:
        events += [ex._account_event(row["buyer"]), ex._account_event(row["seller"])]
    return view, events


def expire_transactions(ex: Exchange, now: float, limit: int) -> list[Event]:
    """End open transactions past their deadline (inside ``write()``)."""
    rows = ex.db.execute(
        "SELECT * FROM transactions WHERE timeout IS NOT NULL AND timeout <= ?"
        " ORDER BY timeout LIMIT ?" + ex.skip_locked,
        (now, limit),
    ).fetchall()
    events: list[Event] = []
    for row in rows:
        phase, settlement = on_timeout(Phase(row["phase"]))
        _change(ex, row, phase, {}, None, now)
        _settle(ex, row, settlement, now)
        _record(ex, row, now, "exchange", "exchange", "timeout", phase, None, None)
        events += _after(ex, row)[1]
    return events


def retire_due(ex: Exchange, now: float, limit: int = 500) -> list[Event]:
    """Expire bids and time out transactions whose deadline is ``now`` or earlier. On a
    shared store a sweep holds the writer lock and locks the rows it takes (which are
    re-checked once locked), so a deadline fires once however many processes run."""
    with ex.write():
        events = ex.expire_bids(now, limit)
        events += expire_transactions(ex, now, limit)
    return events


def next_deadline(ex: Exchange) -> float | None:
    row = ex.db.execute(
        "SELECT MIN(d) FROM (SELECT MIN(expires) AS d FROM bids WHERE state = 'placed'"
        " UNION ALL SELECT MIN(timeout) FROM transactions WHERE timeout IS NOT NULL) AS due"
    ).fetchone()
    return None if row[0] is None else float(row[0])
