"""Narrow payment errors. Each carries the data a caller needs; the app's one error
middleware maps ``code`` to an HTTP status (see ``service.app.STATUS``)."""

from __future__ import annotations

from bitwrk.errors import BitwrkError, Forbidden, InvalidRequest, NotFound


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
