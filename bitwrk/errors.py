"""One root error with narrow subclasses that carry the data a caller needs.

Every error that crosses the wire is defined here, the exchange's own limits and payment
errors included, and ``HTTP_STATUS`` (code -> class -> status) is the one table of the
statuses they are answered with: the exchange's error middleware, the seller's worker
endpoint and the client (which raises the same class back from ``code``) all read it.
"""

from __future__ import annotations

from typing import Any


class BitwrkError(Exception):
    """Root of every error BitWrk raises on purpose."""

    code = "error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.data}


class InvalidRequest(BitwrkError):
    """A request is malformed: missing or mistyped fields, bad JSON, bad values."""

    code = "invalid_request"


class MoneyFormatError(InvalidRequest):
    code = "bad_amount"


class KeyFormatError(InvalidRequest):
    code = "bad_key"


class AddressError(InvalidRequest):
    code = "bad_address"


class UnknownArticle(InvalidRequest):
    code = "unknown_article"


class SignatureError(BitwrkError):
    """Missing signature, or one that does not verify for the claimed address."""

    code = "bad_signature"


class ReplayError(BitwrkError):
    """A nonce not greater than the last accepted one, or a message for an old revision."""

    code = "replayed"


class WrongExchange(BitwrkError):
    code = "wrong_exchange"


class Forbidden(BitwrkError):
    """The signer is not allowed to do this (wrong party, not the operator, ...)."""

    code = "forbidden"


class NotFound(BitwrkError):
    code = "not_found"


class InsufficientFunds(BitwrkError):
    code = "insufficient_funds"


class WrongPhase(BitwrkError):
    """A message that is not valid in the transaction's (or bid's) current state."""

    code = "wrong_phase"


class StaleRevision(ReplayError):
    code = "stale_revision"


class Conflict(BitwrkError):
    """The request contradicts stored state (e.g. a deposit uid reused with other data)."""

    code = "conflict"


class TooLarge(BitwrkError):
    code = "too_large"


class ExchangeUnreachable(BitwrkError):
    """The exchange did not answer (connection refused or lost, 502-504, timeouts) for as
    long as the caller was willing to retry; ``since`` is when it was last reachable."""

    code = "unreachable"


class ApiError(BitwrkError):
    """An error response whose code the client does not know; keeps the HTTP status."""

    code = "api_error"


class WireError(BitwrkError):
    """An answer of the exchange lacks a field of a wire record, or has one of another type
    (``bitwrk/wire.py``); ``field`` names it, as a path like ``Account.reputation.finished``."""

    code = "bad_wire_data"


# --- content-addressed storage and transfer (bitwrk/cas, docs/architecture.md) -------------


class IntegrityError(BitwrkError):
    """Bytes that do not hash to what they were promised under (a chunk, a whole file).

    Carries ``expected`` and ``actual`` SHA-256 hex digests where both are known.
    """

    code = "integrity_error"


class ChunkMissing(NotFound):
    """Chunks a file or job needs are not in the chunk store; carries ``missing`` (hashes)."""

    code = "chunk_missing"


class ManifestError(InvalidRequest):
    """A job manifest that is malformed, not canonical, unsafe or over a limit."""

    code = "bad_manifest"


class TransferError(InvalidRequest):
    """A chunk stream or wanted list that is malformed, truncated or carries the wrong chunks."""

    code = "bad_transfer"


class SealError(BitwrkError):
    """A sealed result that fails authentication: wrong key, tampered, truncated, reordered."""

    code = "bad_seal"


# --- the exchange's own limits (service/) ------------------------------------------------


class RequestTimeout(BitwrkError):
    """The request's body did not arrive within the read timeout; carries ``seconds``."""

    code = "request_timeout"


class BodyCutOff(BitwrkError):
    """The sender's connection closed before the request's body had arrived (a client that
    was killed or lost its network mid-request): nothing of the request was used."""

    code = "body_incomplete"

    def __init__(self, message: str = "the connection closed before the request body arrived",
                 **data: Any) -> None:
        super().__init__(message, **data)


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


# --- the relay (service/relay/, docs/relay.md) -------------------------------------------------


class TunnelError(BitwrkError):
    """A relayed stream, or the seller's whole tunnel, ended before its exchange was done."""

    code = "tunnel_error"


class SellerOffline(BitwrkError):
    """The seller holds no tunnel to this relay (now)."""

    code = "seller_offline"


class ExchangeUnavailable(BitwrkError):
    """The relay could not ask its exchange (down, or answering garbage)."""

    code = "exchange_unavailable"


# --- payments (service/payments/) ------------------------------------------------------------


class XpubError(InvalidRequest):
    """An extended key that is malformed, private, or for the wrong network."""

    code = "bad_xpub"


class PaymentsDisabled(NotFound):
    """The operator configured no extended public key: no Bitcoin deposits or withdrawals."""

    code = "payments_disabled"


class LimitExceeded(Forbidden):
    """A withdrawal over the per-account daily limit; carries ``limit`` and ``used``."""

    code = "limit_exceeded"


class RateLimited(Forbidden):
    """Too many new deposit addresses in the window; carries ``retry_after`` seconds."""

    code = "rate_limited"


class BackendError(BitwrkError):
    """The chain backend failed; carries ``backend`` and ``method``. Never credits."""

    code = "backend_error"


class BackendUnavailable(BackendError):
    """Timeout, refused connection or a 5xx: worth retrying with backoff."""

    code = "backend_unavailable"


class BackendProtocolError(BackendError):
    """The backend answered, but with something that is not what its API documents."""

    code = "backend_garbage"


# --- the one table: code -> class -> HTTP status ---------------------------------------------

# Looked up by the exact code (a subclass does not inherit its parent's status: ChunkMissing
# is not answered 404); a code not listed gets the server's default (see ``http_status``).
_STATUS_BY_CLASS: tuple[tuple[type[BitwrkError], int], ...] = (
    (SignatureError, 401),
    (InsufficientFunds, 402),
    (Forbidden, 403),
    (NotFound, 404),
    (RequestTimeout, 408),
    (BodyCutOff, 400),
    (ReplayError, 409),
    (StaleRevision, 409),
    (WrongPhase, 409),
    (Conflict, 409),
    (TooLarge, 413),
    (PaymentsDisabled, 404),
    (LimitExceeded, 403),
    (RateLimited, 429),
    (Busy, 503),
    (SelfTrade, 409),
    (TooManyBids, 403),
    (Barred, 403),
    (TooManyStreams, 429),
    (TunnelError, 502),
    (SellerOffline, 503),
    (ExchangeUnavailable, 503),
)
HTTP_STATUS: dict[str, int] = {cls.code: status for cls, status in _STATUS_BY_CLASS}


def http_status(exc: BitwrkError, default: int = 400) -> int:
    """The HTTP status ``exc`` is answered with: its code's entry, else ``default``."""
    return HTTP_STATUS.get(exc.code, default)


def error_classes() -> dict[str, type[BitwrkError]]:
    """Every concrete error class by its code (the client maps responses back with this)."""
    found: dict[str, type[BitwrkError]] = {}
    todo: list[type[BitwrkError]] = [BitwrkError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found
