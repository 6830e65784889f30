"""The chain watcher: poll the backend, record and credit deposits, notice paid payouts.

Backend failures (timeouts, garbage) credit nothing: the poll is logged and retried with
exponential backoff; the store changes only through the group committer, in one
transaction per poll, so a crash between polls loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from service import db
from service.committer import Committer
from service.config import PaymentConfig
from service.events import Event, EventBus
from service.exchange import Exchange

from . import deposits, payouts
from .chain import ChainBackend
from .core import CoreBackend
from .derivation import check_key_network, parse_xpub
from .errors import BackendError, XpubError
from .esplora import EsploraBackend

log = logging.getLogger("bitwrk.payments")
MAX_BACKOFF = 600.0


def make_backend(cfg: PaymentConfig) -> ChainBackend | None:
    if cfg.xpub is None or cfg.backend == "none":
        return None
    if cfg.backend == "core":
        return CoreBackend(cfg.backend_url, parse_xpub(cfg.xpub), user=cfg.rpc_user,
                           password=cfg.rpc_password, timeout=cfg.request_timeout)
    return EsploraBackend(cfg.backend_url, timeout=cfg.request_timeout)


def check_store_key(ex: Exchange) -> None:
    """Pin the xpub to the store on first use: addresses already handed out were derived
    from it, so starting with another key would silently lose deposits."""
    xpub = ex.cfg.payments.xpub
    if xpub is None:
        return
    check_key_network(parse_xpub(xpub), ex.cfg.network)
    stored = db.meta(ex.db, "payments_xpub")
    if stored is None:
        ex.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                          [("payments_xpub", xpub), ("payments_network", ex.cfg.network)])
    elif stored != xpub:
        raise XpubError("this store's deposit addresses come from another xpub",
                        stored=stored)


class ChainWatcher:
    """The exchange's watch on the Bitcoin chain (see the module text): owns the poll loop
    and its backoff. Each poll records deposits to the operator's addresses, credits the
    confirmed ones and marks exported payout batches paid, all through the group committer.
    """

    def __init__(self, ex: Exchange, committer: Committer, bus: EventBus,
                 backend: ChainBackend, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.ex, self.committer, self.bus, self.backend = ex, committer, bus, backend
        self.cfg = ex.cfg.payments
        self.failures = 0
        self._sleep = sleep

    async def poll_once(self) -> None:
        outputs = await self.backend.scan(deposits.watch_set(self.ex))
        events = await self.committer.submit(lambda: deposits.apply_scan(self.ex, outputs))
        self.bus.publish(events)
        for txid in payouts.exported(self.ex):
            seen = await self.backend.confirmations(txid)
            if seen is not None and seen >= 1:
                view, events = await self.committer.submit(self._confirm(txid))
                self.bus.publish(events)
                log.info("payout batch %s paid by %s", view["id"], txid)

    def _confirm(self, txid: str) -> Callable[[], tuple[dict[str, Any], list[Event]]]:
        return lambda: payouts.confirm(self.ex, txid)

    def next_delay(self) -> float:
        if not self.failures:
            return self.cfg.poll_seconds
        return float(min(MAX_BACKOFF, self.cfg.poll_seconds * 2 ** min(self.failures, 10)))

    async def step(self) -> None:
        """One poll; a failure is logged and counted, never raised."""
        try:
            await self.poll_once()
            self.failures = 0
        except BackendError as exc:
            self.failures += 1
            log.warning("chain backend failed (%s); nothing credited, retry in %.1f s",
                        exc.message, self.next_delay())
        except Exception:
            self.failures += 1
            log.exception("chain watcher failed; retry in %.1f s", self.next_delay())

    async def run_forever(self) -> None:
        try:
            while True:
                await self.step()
                await self._sleep(self.next_delay())
        finally:
            await self.backend.close()
