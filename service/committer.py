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


class Committer:
    """Owns the exchange's write path: queues ``submit``ted domain calls and runs each
    loop turn's batch in one store transaction (see the module text)."""

    def __init__(self, exchange: Exchange) -> None:
        self.ex = exchange
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._scheduled = False

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
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._scheduled = bool(self._queue)
        if self._scheduled:
            asyncio.get_running_loop().call_soon(self.flush)
        outcomes = self._run(batch)
        for future, ok, value in outcomes:
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run(self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
             ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Every request of the batch gets an outcome, whatever the store does: a lock held
        by another connection (bounded by the connection's busy timeout) or a failed
        COMMIT answers them all with :class:`Busy` and keeps nothing."""
        db = self.ex.db
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            store.begin(db)
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
