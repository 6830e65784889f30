"""Public per-seller record (issue 10 item 4): trades finished, disputed, disputes lost and
establish timeouts (the seller never sent its ``endpoint``). A seller that misses its
endpoint ``bar_after_misses`` times in a row may not place sell bids for ``bar_seconds``:
a free way to tie up buyers costs the griefer its ability to sell.

Updated inside the transaction that changes the phase, so the counts always match the
transactions' history (migration 3 back-fills them from it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bitwrk.wire import Phase, Reputation

from .config import Limits
from .errors import Barred

COUNTS = Reputation.sent_fields()  # the public record is exactly the wire's


def _bump(db: sqlite3.Connection, seller: str, column: str) -> None:
    db.execute("INSERT OR IGNORE INTO reputation(address) VALUES (?)", (seller,))
    db.execute(f"UPDATE reputation SET {column} = {column} + 1 WHERE address = ?", (seller,))


def record(db: sqlite3.Connection, row: sqlite3.Row, new: Phase, now: float,
           limits: Limits) -> None:
    """Count the transition of transaction ``row`` (its pre-state) to phase ``new``."""
    old, seller = Phase(row["phase"]), str(row["seller"])
    if new == Phase.FINISHED:
        _bump(db, seller, "finished")
        db.execute("UPDATE reputation SET recent_misses = 0 WHERE address = ?", (seller,))
    elif new == Phase.RESULT_DISPUTED:
        _bump(db, seller, "disputed")
    elif old == Phase.RESULT_DISPUTED and new == Phase.CANCELLED:
        _bump(db, seller, "disputes_lost")
    elif old == Phase.ESTABLISHING and new == Phase.EXPIRED and row["workerurl"] is None:
        _bump(db, seller, "establish_timeouts")
        db.execute(
            "UPDATE reputation SET"
            " barred_until = CASE WHEN recent_misses + 1 >= ? THEN ? ELSE barred_until END,"
            " recent_misses = CASE WHEN recent_misses + 1 >= ? THEN 0 ELSE recent_misses + 1"
            " END WHERE address = ?",
            (limits.bar_after_misses, now + limits.bar_seconds, limits.bar_after_misses, seller),
        )


def of(db: sqlite3.Connection, address: str) -> dict[str, int]:
    row = db.execute(
        "SELECT finished, disputed, disputes_lost, establish_timeouts FROM reputation"
        " WHERE address = ?", (address,),
    ).fetchone()
    return {name: 0 if row is None else int(row[name]) for name in COUNTS}


def barred_until(db: sqlite3.Connection, address: str, now: float) -> float | None:
    row = db.execute(
        "SELECT barred_until FROM reputation WHERE address = ?", (address,)
    ).fetchone()
    return float(row[0]) if row is not None and row[0] > now else None


def check_may_sell(db: sqlite3.Connection, address: str, now: float) -> None:
    until = barred_until(db, address, now)
    if until is not None:
        raise Barred("this seller missed its endpoint too often and may not sell yet",
                     until=until)


def account_fields(db: sqlite3.Connection, address: str, now: float) -> dict[str, Any]:
    """The account view's part: ``reputation`` (exactly the four counts) and ``barred_until``."""
    return {"reputation": of(db, address), "barred_until": barred_until(db, address, now)}
