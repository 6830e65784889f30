"""One root error with narrow subclasses that carry the data a caller needs.

The exchange maps ``code`` to an HTTP status in one middleware; the client raises
the same classes from an error response, so both sides speak one vocabulary.
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


def error_classes() -> dict[str, type[BitwrkError]]:
    """Every concrete error class by its code (the client maps responses back with this)."""
    found: dict[str, type[BitwrkError]] = {}
    todo: list[type[BitwrkError]] = [BitwrkError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


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
