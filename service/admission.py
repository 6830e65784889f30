"""Who may place a bid, and what a revoked trust takes off the book (issue 11).

- ``~trusted`` sells need the operator's ``trusts`` relation; revoking it withdraws the
  seller's resting ``~trusted`` sells at once, so nobody is matched with a seller the
  operator no longer vouches for.
- A seller barred for missed endpoints (``service.reputation``) may not sell.
- At most ``limits.max_open_bids`` placed bids per address, sells included: a key with no
  money cannot grow the book, the ``/market`` payload or the store without bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitwrk.articles import TRUSTED_SUFFIX
from bitwrk.errors import Forbidden
from bitwrk.wire import BidState, BidType

from . import reputation
from .errors import TooManyBids
from .events import Event

if TYPE_CHECKING:
    from .exchange import Exchange


def check_bid(ex: Exchange, address: str, side: str, trusted: bool, now: float) -> None:
    """Refuse a bid the address may not place now (inside the bid's ``write()``)."""
    if side == BidType.SELL:
        if trusted and not ex.trusts(ex.cfg.operator, address):
            raise Forbidden("trusted articles need the operator's trust relation")
        reputation.check_may_sell(ex.db, address, now)
    limit = ex.cfg.limits.max_open_bids
    (open_bids,) = ex.db.execute(
        "SELECT COUNT(*) FROM bids WHERE address = ? AND state = 'placed'", (address,)
    ).fetchone()
    if open_bids >= limit:
        raise TooManyBids(f"at most {limit} open bids per address", limit=limit)


def on_relation(ex: Exchange, source: str, kind: str, target: str, enabled: bool,
                now: float) -> list[Event]:
    """After a relation is stored: the operator revoking trust cancels the target's resting
    ``~trusted`` sells (inside the relation's ``write()``); their events."""
    if enabled or kind != "trusts" or source != ex.cfg.operator:
        return []
    rows = ex.db.execute(
        "SELECT * FROM bids WHERE address = ? AND state = 'placed' AND type = 'sell'"
        " AND article LIKE ?", (target, "%" + TRUSTED_SUFFIX),
    ).fetchall()
    events: list[Event] = []
    for row in rows:
        ex.close_bid(row, BidState.CANCELLED, now)
        ex.books.get(row["article"]).remove(row["id"])
        events.append(Event("bid", ex.bid(row["id"]), to=(target,)))
        events.append(Event("book", {"article": row["article"]}, public=True))
    return events
