"""Deadlines do not run while the exchange is down.

The exchange notes the time in the store every :data:`HEARTBEAT` seconds. On start it moves
every open deadline — a placed bid's expiry, an open transaction's phase timeout — later by
the time since the last note, in one SQLite transaction, before the order books are loaded.
So resting bids are back in the book with the life they had left, and a trade that was
matched, transmitting or working when the exchange died (SIGKILL included) gets the time it
had left, instead of expiring for an outage that was nobody's fault. The shift may be up to
one heartbeat too generous; it is never short.
"""

from __future__ import annotations

import logging

from . import db, store
from .store import Conn

log = logging.getLogger("bitwrk.exchange")
HEARTBEAT = 1.0  # seconds between notes of "alive at"
_KEY = "alive_at"
ALIVE_GAP = 3 * HEARTBEAT  # on a shared store, a heartbeat this fresh is another process


def note_alive(conn: Conn, now: float) -> None:
    """Record ``now`` as the latest moment the exchange was known to be running."""
    if conn.in_transaction:  # never inside a request's transaction: try again next beat
        return
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_KEY, repr(now)))


def resume(conn: Conn, now: float, shift: bool = True) -> float:
    """Move open deadlines later by the downtime since the last heartbeat (when ``shift``);
    returns that downtime in seconds (0 on a first start)."""
    last = db.meta(conn, _KEY)
    down = 0.0 if last is None else max(0.0, now - float(last))
    if store.shared(conn) and down <= ALIVE_GAP:
        down = 0.0  # another exchange process is running: the exchange was never down
    store.begin(conn)
    try:
        if shift and down > 0:
            bids = conn.execute("UPDATE bids SET expires = expires + ? WHERE state = 'placed'",
                                (down,)).rowcount
            txs = conn.execute("UPDATE transactions SET timeout = timeout + ?"
                               " WHERE timeout IS NOT NULL AND retired IS NULL",
                               (down,)).rowcount
            log.warning("exchange was down %.1f s: %d bid and %d transaction deadlines moved"
                        " later by that", down, bids, txs)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (_KEY, repr(now)))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return down
