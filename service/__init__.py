"""The BitWrk exchange: signed bids, price-time matching, transactions and a ledger on SQLite.

``create_app(config)`` builds the aiohttp application; ``python -m service`` runs it.
"""

from __future__ import annotations

from .app import create_app
from .config import Config

__all__ = ["Config", "create_app"]
