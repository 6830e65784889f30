"""The exchange's web pages: the market, one transaction's trace, one account's ledger.

The pages are static HTML + vanilla JS shipped in ``static/``; they read the JSON API under
``/api/v1`` and follow ``/api/v1/events`` with an ``EventSource``. Nothing is fetched from
elsewhere: a Content-Security-Policy of ``'self'`` says so to the browser too.
"""

from __future__ import annotations

from .pages import routes

__all__ = ["routes"]
