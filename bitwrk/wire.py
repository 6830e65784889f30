"""The wire vocabulary: every state name that crosses the exchange's API or the daemon's
journal, as StrEnums whose values are the strings on the wire (so JSON, SQLite rows and
old journals read back unchanged: ``Phase.WORKING == "WORKING"``).

docs/protocol.md describes what each phase means and which message moves a transaction
between them; the state machine itself is ``service/phases.py``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "RETIRED_PHASES",
    "UNIT_SETTLED",
    "BidState",
    "BidType",
    "JobState",
    "Phase",
    "TradeState",
    "UnitState",
]


class Phase(StrEnum):
    """A transaction's phase on the exchange (the ``phase`` field of a transaction)."""

    ESTABLISHING = "ESTABLISHING"
    TRANSMITTING = "TRANSMITTING"
    WORKING = "WORKING"
    UNVERIFIED = "UNVERIFIED"
    FINISHED = "FINISHED"
    RESULT_DISPUTED = "RESULT_DISPUTED"
    WORK_DISPUTED = "WORK_DISPUTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


# Phases no party message leaves (RESULT_DISPUTED waits for the operator, not a party).
RETIRED_PHASES = frozenset({Phase.FINISHED, Phase.CANCELLED, Phase.EXPIRED,
                            Phase.WORK_DISPUTED, Phase.RESULT_DISPUTED})


class BidType(StrEnum):
    """Which side of the order book a bid is on."""

    BUY = "buy"
    SELL = "sell"


class BidState(StrEnum):
    """A bid's life: resting in the book, then matched into a trade or closed unmatched."""

    PLACED = "placed"
    MATCHED = "matched"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class JobState(StrEnum):
    """A buyer job in the daemon's journal."""

    ACTIVE = "active"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class UnitState(StrEnum):
    """One unit (frame or tile) of a buyer job in the daemon's journal."""

    PENDING = "pending"  # waiting for a bid
    BIDDING = "bidding"  # a buy bid rests on the exchange
    TRADING = "trading"  # matched: a transaction is under way
    DONE = "done"  # the verified result is stored
    FAILED = "failed"  # given up on (cancelled job, too many attempts)


UNIT_SETTLED = frozenset({UnitState.DONE, UnitState.FAILED})  # nothing more to buy


class TradeState(StrEnum):
    """A trade in the daemon's journal: still to be followed after a restart, or closed."""

    OPEN = "open"
    CLOSED = "closed"

