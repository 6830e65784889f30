"""Group commit: the requests that arrive in one turn of the event loop share one SQLite
transaction (each inside its own savepoint), so one COMMIT — the expensive part of a
request — serves many. Every request still gets its answer only after its data is
committed: nothing acknowledged can be lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from . import store
from .errors import Busy
from .exchange import Exchange

log = logging.getLogger("bitwrk.exchange")
T = TypeVar("T")
MAX_BATCH = 256
LOCK_RETRY = 0.001  # seconds between tries for the writer lock (shared store)
LOCK_PATIENCE = 0.5  # seconds of tries before waiting in the lock's queue


class Committer:
    """Owns the exchange's write path: queues ``submit``ted domain calls and runs each
    loop turn's batch in one store transaction (see the module text)."""

    def __init__(self, exchange: Exchange) -> None:
        self.ex = exchange
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._waiting_since: float | None = None  # the writer lock was refused since then
        self._begun = False  # _writer_lock began the transaction

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``work`` (a synchronous domain call) in the next group; its result resolves
        after the group's COMMIT."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((work, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._writer_lock(loop.time()):
            # Another exchange process writes (a shared store): serve HTTP, check
            # signatures meanwhile instead of blocking the loop on the lock; the batch
            # grows, which the next commit amortizes.
            loop.call_later(LOCK_RETRY, self.flush)
            return
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._scheduled = bool(self._queue)
        if self._scheduled:
            loop.call_soon(self.flush)
        outcomes = self._run(batch)
        for future, ok, value in outcomes:
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _writer_lock(self, now: float) -> bool:
        """Begin the group's transaction unless another process holds the writer lock
        (only ever on a shared store). After ``LOCK_PATIENCE`` of refusals, wait in the
        lock's queue (bounded by the lock timeout) so no process starves."""
        if not self.ex.shared:
            return True
        if self._waiting_since is None:
            self._waiting_since = now
        wait = now - self._waiting_since >= LOCK_PATIENCE
        try:
            got = store.begin(self.ex.db, wait=wait)
        except store.ERRORS as exc:  # answered in _run: it begins (and fails) again
            log.warning("writer lock not granted (%s)", exc)
            got = True
        if got:
            self._waiting_since = None
            if self.ex.db.in_transaction:
                self._begun = True
        return got

    def _run(self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
             ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Every request of the batch gets an outcome, whatever the store does: a lock held
        by another connection (bounded by the connection's busy timeout) or a failed
        COMMIT answers them all with :class:`Busy` and keeps nothing."""
        db = self.ex.db
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            if not self._begun:
                store.begin(db)
            self._begun = False
            for work, future in batch:
                try:
                    outcomes.append((future, True, work()))
                except store.FAILURES:
                    raise  # the store, not the request: the whole group fails
                except Exception as exc:  # answered to its own request; the group goes on
                    outcomes.append((future, False, exc))
            db.execute("COMMIT")
        except store.ERRORS as exc:
            log.warning("group commit failed (%s); %d requests answered busy", exc, len(batch))
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except store.ERRORS:
                    log.exception("rollback failed")
            self.ex.reload_books()
            busy = Busy("the exchange's store is busy; nothing was changed, send it again")
            return [(future, False, busy) for _, future in batch]
        return outcomes
