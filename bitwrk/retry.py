"""What counts as a failure in transit, how long to wait before trying again, and how to
say what failed in one line that is never empty."""

from __future__ import annotations

import secrets

import aiohttp

from .errors import BitwrkError

RETRY_BASE = 0.25  # seconds before the first retry
RETRY_CAP = 2.0  # no wait between retries is longer: an exchange back up is seen in <= 2 s
TRANSIENT_STATUS = frozenset({502, 503, 504})  # a proxy in front of a restarting exchange
_random = secrets.SystemRandom()


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure in transit, worth the same request again later."""
    if isinstance(exc, BitwrkError):  # an error response: its status says (503 busy, ...)
        return exc.data.get("status") in TRANSIENT_STATUS
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
                      | TimeoutError | ConnectionError)


def backoff(attempt: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Seconds to wait before retry ``attempt`` (0, 1, ...): exponential, capped, and
    jittered over its upper half so that many clients do not come back in step."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    return ceiling / 2 + _random.uniform(0, ceiling / 2)


def describe(exc: BaseException) -> str:
    """A one-line reason that is never empty (``TimeoutError()`` has no text of its own)."""
    if isinstance(exc, BitwrkError) and exc.message:
        return exc.message
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return f"{name}: {text}" if text else name
