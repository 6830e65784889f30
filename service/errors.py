"""Narrow errors of the exchange's own limits (the app's one middleware maps ``code`` to an
HTTP status, see ``service.app.STATUS``)."""

from __future__ import annotations

from bitwrk.errors import BitwrkError, Conflict, Forbidden


class RequestTimeout(BitwrkError):
    """The request's body did not arrive within the read timeout; carries ``seconds``."""

    code = "request_timeout"


class Busy(BitwrkError):
    """The store could not be written in time (locked by another connection, I/O error);
    nothing of the request was kept and it is safe to send again."""

    code = "busy"


class SelfTrade(Conflict):
    """The incoming bid would trade with the same address's own resting bid: refused, the
    resting bid stays; carries ``resting`` (its id)."""

    code = "self_trade"


class TooManyBids(Forbidden):
    """The address already has ``limit`` open bids."""

    code = "too_many_bids"


class Barred(Forbidden):
    """A seller that missed its ``endpoint`` too often may not sell until ``until``."""

    code = "barred"


class TooManyStreams(BitwrkError):
    """Event stream subscribers are at their cap (in total or for this address)."""

    code = "too_many_streams"
