"""Read-only views of the store, shaped as the API's JSON (no writes here)."""

from __future__ import annotations

from typing import Any

from bitwrk.errors import InvalidRequest, NotFound
from bitwrk.wire import Account, Bid, BidType, Message, Movement, Transaction, wire_view

from . import reputation
from .exchange import BID_COLUMNS, Exchange
from .payments.deposits import account_payments

MAX_PAGE = 200
INTERVALS = (60, 300, 3600, 86400)


def account(ex: Exchange, address: str) -> dict[str, Any]:
    row = ex.db.execute(
        "SELECT available, blocked, last_nonce FROM accounts WHERE address = ?", (address,)
    ).fetchone()
    available, blocked, nonce = (0, 0, 0) if row is None else tuple(row)
    return wire_view(Account, {"address": address, "available": available, "blocked": blocked,
                               "last_nonce": nonce, **account_payments(ex, address),
                               **reputation.account_fields(ex.db, address, ex.clock())})


def ledger(ex: Exchange, address: str, before: int | None, limit: int) -> dict[str, Any]:
    """Movements touching ``address``, newest first; page with ``before`` = the last id seen."""
    limit = max(1, min(limit, MAX_PAGE))
    top = before if before is not None else 2**62
    rows = ex.db.execute(
        "SELECT * FROM movements WHERE id < ? AND (available_account = ? OR blocked_account = ?)"
        " ORDER BY id DESC LIMIT ?",
        (top, address, address, limit),
    ).fetchall()
    items = [wire_view(Movement, r) for r in rows]
    more = len(items) == limit
    return {"address": address, "movements": items,
            "next_before": items[-1]["id"] if more else None}


def public_transaction(ex: Exchange, txid: int) -> dict[str, Any]:
    """A transaction as anyone may see it: the fields ``bitwrk.wire.Transaction`` declares.
    Columns it does not declare are never shown: ``buyersecret`` held the buyer's secret in
    clear before sellers proved receipt with ``secretproof`` (docs/protocol-security.md), and
    old rows may still have it. The result key is sealed to the buyer; the receipt is bound
    to this trade."""
    return wire_view(Transaction, ex.transaction(txid))


def transaction(ex: Exchange, txid: int) -> dict[str, Any]:
    return {**public_transaction(ex, txid), "messages": messages(ex, txid)}


def messages(ex: Exchange, txid: int) -> list[dict[str, Any]]:
    ex.transaction(txid)  # NotFound for unknown ids
    rows = ex.db.execute("SELECT * FROM messages WHERE txid = ? ORDER BY id", (txid,))
    return [wire_view(Message, r) for r in rows]


def transaction_movements(ex: Exchange, txid: int) -> list[dict[str, Any]]:
    rows = ex.db.execute("SELECT * FROM movements WHERE txid = ? ORDER BY id", (txid,))
    return [wire_view(Movement, r) for r in rows]


def bids_of(ex: Exchange, address: str, state: str | None, limit: int) -> list[dict[str, Any]]:
    limit = max(1, min(limit, MAX_PAGE))
    sql = f"SELECT {BID_COLUMNS} FROM bids WHERE address = ?"
    args: list[Any] = [address]
    if state is not None:
        sql += " AND state = ?"
        args.append(state)
    rows = ex.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [wire_view(Bid, r) for r in rows]


MARKET_TTL = 0.25  # seconds a cached market view may lag behind bids expiring on their own
MARKET_CACHE = 256  # cached (article, interval, limit) views at most


def market(ex: Exchange, article: str, interval: int, limit: int) -> dict[str, Any]:
    """The market view, recomputed only when the article's book changed (every trade and
    bid changes it) or ``MARKET_TTL`` passed: unauthenticated GETs cost a dict lookup
    however big the book (issue 11)."""
    if interval not in INTERVALS:
        raise InvalidRequest(f"interval must be one of {list(INTERVALS)}")
    key, now = (article, interval, limit), ex.clock()
    version = ex.books.get(article).version
    hit = ex.market_cache.get(key)
    if hit is not None and hit[0] == version and now - hit[1] < MARKET_TTL:
        return hit[2]
    view = _market(ex, article, interval, limit)
    if len(ex.market_cache) >= MARKET_CACHE:
        ex.market_cache.clear()
    ex.market_cache[key] = (version, now, view)
    return view


def _market(ex: Exchange, article: str, interval: int, limit: int) -> dict[str, Any]:
    now = ex.clock()
    book = ex.books.get(article)
    rows = ex.db.execute(
        "SELECT id, price, matched FROM transactions WHERE article = ? ORDER BY id DESC LIMIT ?",
        (article, max(1, min(limit, 1000))),
    ).fetchall()
    trades = [{"txid": r[0], "price": r[1], "time": r[2]} for r in rows]
    return {
        "article": article,
        "bids": [{"price": p, "count": n} for p, n in book.depth(BidType.BUY, now)],
        "asks": [{"price": p, "count": n} for p, n in book.depth(BidType.SELL, now)],
        "trades": trades[:50],
        "ohlc": ohlc(trades, interval),
        "interval": interval,
    }


def ohlc(trades: list[dict[str, Any]], interval: int) -> list[dict[str, Any]]:
    """Open/high/low/close/volume per ``interval`` seconds, oldest first."""
    candles: dict[int, dict[str, Any]] = {}
    for t in sorted(trades, key=lambda t: (t["time"], t["txid"])):
        start = int(t["time"] // interval * interval)
        c = candles.get(start)
        if c is None:
            candles[start] = {"time": start, "open": t["price"], "high": t["price"],
                              "low": t["price"], "close": t["price"], "volume": 1}
            continue
        c["high"], c["low"] = max(c["high"], t["price"]), min(c["low"], t["price"])
        c["close"] = t["price"]
        c["volume"] += 1
    return list(candles.values())


def articles(ex: Exchange) -> list[str]:
    return sorted(ex.traded | set(ex.books.articles()))


def totals(ex: Exchange) -> dict[str, int]:
    """The ledger invariant's terms from the running per-kind totals (constant time):
    Σ balances + fees + pending withdrawals = Σ deposits − Σ paid withdrawals."""
    sums = {r["kind"]: r for r in ex.db.execute("SELECT * FROM ledger_totals")}
    deposit = sums.get("deposit")
    return {"available": sum(r["available"] for r in sums.values()),
            "blocked": sum(r["blocked"] for r in sums.values()),
            "fees": sum(r["fee"] for r in sums.values()),
            "deposits": 0 if deposit is None else -deposit["world"],
            "world": sum(r["world"] for r in sums.values()),
            **_withdrawal_totals(ex)}


def _withdrawal_totals(ex: Exchange) -> dict[str, int]:
    # Few rows (withdrawals are rare, batched payouts); indexed by state.
    pending, paid = ex.db.execute(
        "SELECT COALESCE(SUM(amount) FILTER (WHERE state IN ('pending', 'exported')), 0),"
        " COALESCE(SUM(amount) FILTER (WHERE state = 'paid'), 0) FROM withdrawals"
    ).fetchone()
    return {"pending_withdrawals": pending, "paid_withdrawals": paid}


def audit_totals(ex: Exchange) -> dict[str, int]:
    """The same terms recomputed from the balances and every movement (a full scan: for
    tests and the operator's audits, never per request)."""
    available, blocked = ex.db.execute(
        "SELECT COALESCE(SUM(available), 0), COALESCE(SUM(blocked), 0) FROM accounts"
    ).fetchone()
    fees, world = ex.db.execute(
        "SELECT COALESCE(SUM(fee_delta), 0), COALESCE(SUM(world_delta), 0) FROM movements"
    ).fetchone()
    deposits = ex.db.execute("SELECT COALESCE(SUM(amount), 0) FROM deposits").fetchone()[0]
    return {"available": available, "blocked": blocked, "fees": fees, "deposits": deposits,
            "world": world, **_withdrawal_totals(ex)}


def relations_of(ex: Exchange, source: str) -> list[dict[str, Any]]:
    rows = ex.db.execute(
        "SELECT source, type, target, enabled, modified FROM relations WHERE source = ?",
        (source,),
    )
    return [{**dict(r), "enabled": bool(r["enabled"])} for r in rows]


def require_found(value: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        raise NotFound(f"no {what}")
    return value
