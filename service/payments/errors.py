"""The payment errors. They are defined in :mod:`bitwrk.errors`, beside the one
code -> status table, so the client maps them back to the same classes (``PaymentsDisabled``,
``LimitExceeded``, ``RateLimited``); this module keeps the payment code's imports short."""

from __future__ import annotations

from bitwrk.errors import (
    BackendError,
    BackendProtocolError,
    BackendUnavailable,
    LimitExceeded,
    PaymentsDisabled,
    RateLimited,
    XpubError,
)

__all__ = ["BackendError", "BackendProtocolError", "BackendUnavailable", "LimitExceeded",
           "PaymentsDisabled", "RateLimited", "XpubError"]
