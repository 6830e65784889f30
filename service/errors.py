"""The exchange's own limit errors. They are defined in :mod:`bitwrk.errors`, beside the
one code -> status table, so the client maps them back to the same classes; this module
keeps the service's imports short."""

from __future__ import annotations

from bitwrk.errors import Barred, Busy, RequestTimeout, SelfTrade, TooManyBids, TooManyStreams

__all__ = ["Barred", "Busy", "RequestTimeout", "SelfTrade", "TooManyBids", "TooManyStreams"]
