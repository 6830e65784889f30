"""One events-stream subscription per participant, fanned out to whoever waits.

Trades wait for "transaction 7 reached TRANSMITTING" or "bid 12 matched". A waiter first
reads the current state over HTTP, then waits for stream events; there are no polling
loops with growing sleeps (the original's flaw).

Reconnect and reconcile: the stream is reopened with capped, jittered backoff; every
``hello`` (a first connect, a reconnect, or a new ``epoch`` after an exchange restart) makes
every waiter re-read its object at once, so a match or a phase change made while the
stream was down is acted on as soon as the exchange answers again, never found through a
timeout. A wait whose local timeout passes re-reads the object and keeps waiting while the
exchange's own deadline for it (``timeout`` / ``expires``) is still ahead — an exchange
restart moves those deadlines by its downtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from ..client import ExchangeClient, backoff, describe
from ..errors import BitwrkError, WireError
from ..wire import Bid, Phase, Transaction

log = logging.getLogger("bitwrk.daemon")
DEADLINE_SLACK = 5.0  # seconds past the exchange's deadline before a wait gives up

Watched = Bid | Transaction
W = TypeVar("W", Bid, Transaction)
KINDS: dict[str, type[Watched]] = {"bid": Bid, "transaction": Transaction}  # event kinds


class EventWatcher:
    """The daemon's one subscription to the exchange's event stream (see the module text).

    Owns the stream task and the waiters: ``wait`` returns a bid or transaction once a
    predicate holds, ``wait_for_party`` once the other party has taken its turn. Every
    (re)connect makes each waiter re-read its object, so nothing waits on a lost event.
    """

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        # None in a queue: re-read the object (the stream reconnected, events may be lost)
        self._waiters: dict[tuple[type[Watched], int], set[asyncio.Queue[Watched | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0  # hellos after the first: each one reconciled every waiter
        self.epoch: str | None = None  # the exchange's, from its last hello
        self.restarts = 0  # hellos with a new epoch: the exchange restarted meanwhile

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async for event in self.client.events(self.client.address):
                    if event.kind == "hello":
                        failures = 0
                        self._hello(event.data)
                    elif event.kind in KINDS:
                        self._dispatch(KINDS[event.kind], event.data)
                reason = "closed by the exchange"
            except (TimeoutError, aiohttp.ClientError, BitwrkError, ValueError,
                    OSError) as exc:
                reason = describe(exc)
            if self.connected.is_set():
                log.info("events stream lost (%s); reconnecting", reason)
            self.connected.clear()
            await asyncio.sleep(backoff(failures))
            failures += 1

    def _hello(self, data: dict[str, Any]) -> None:
        epoch = data.get("epoch")
        if self.epoch is not None and epoch != self.epoch:
            self.restarts += 1
            log.warning("the exchange restarted; reconciling open bids and trades")
        if self.epoch is not None:
            self.reconnects += 1
        self.epoch = epoch if isinstance(epoch, str) else ""
        self.connected.set()
        self._wake_all()

    def _dispatch(self, kind: type[Watched], data: dict[str, Any]) -> None:
        try:
            obj = kind.from_json(data)
        except WireError as exc:  # waiters re-read it over HTTP when their wait runs out
            log.warning("ignored an event the daemon cannot read: %s", exc)
            return
        for q in self._waiters.get((kind, obj.id), ()):
            q.put_nowait(obj)

    def _wake_all(self) -> None:
        """After a (re)connect, make every waiter re-read its object: events may be lost."""
        for q_set in self._waiters.values():
            for q in q_set:
                q.put_nowait(None)

    async def wait_for_party(self, txid: int, phase: Phase, patience: float, who: str
                             ) -> Transaction:
        """The transaction once it leaves ``phase``, which waits on the other party. If it
        stays there ``patience`` seconds while this stream was connected throughout (so the
        other party had every chance to hear its turn), ``who`` is taken to be gone."""
        while True:
            reconnects = self.reconnects
            try:
                return await self.wait(Transaction, txid, lambda t: t.phase != phase,
                                       patience, stretch=False)
            except TimeoutError:
                calm = (reconnects == self.reconnects and self.connected.is_set()
                        and self.client.unreachable_since is None)
                if calm:
                    raise TimeoutError(f"{who} silent for {patience:.0f} s in {phase} of"
                                       f" transaction {txid}: taken as gone") from None

    async def wait(
        self, kind: type[W], obj_id: int, done: Callable[[W], bool], timeout: float,
        stretch: bool = True,
    ) -> W:
        """The object (a ``Bid`` or ``Transaction``) once ``done(obj)`` holds. With
        ``stretch``, ``timeout`` grows while the exchange's own deadline for the object lies
        further ahead."""
        q: asyncio.Queue[Watched | None] = asyncio.Queue()
        key: tuple[type[Watched], int] = (kind, obj_id)
        self._waiters.setdefault(key, set()).add(q)
        until = time.monotonic() + timeout
        try:
            while True:
                obj = await self._read(kind, obj_id)  # the client retries through outages
                if done(obj):
                    return obj
                left = until - time.monotonic()
                if left <= 0:
                    later = _deadline_of(obj) + DEADLINE_SLACK - time.time()
                    if later <= 0 or not stretch:
                        raise TimeoutError(f"{kind.__name__.lower()} {obj_id} still"
                                           f" {_state_of(obj)} after {timeout:.0f} s and past"
                                           " its deadline")
                    until, left = time.monotonic() + later, later
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        while (event := await q.get()) is not None:
                            assert isinstance(event, kind)  # queues are keyed by kind
                            if done(event):
                                return event
        finally:
            self._waiters[key].discard(q)
            if not self._waiters[key]:
                del self._waiters[key]

    async def _read(self, kind: type[W], obj_id: int) -> W:
        obj = await (self.client.bid(obj_id) if kind is Bid else
                     self.client.transaction(obj_id))
        assert isinstance(obj, kind)
        return obj


def _deadline_of(obj: Watched) -> float:
    """The exchange's deadline for a transaction's phase or a bid's life (epoch seconds)."""
    if isinstance(obj, Bid):
        return obj.expires
    return obj.timeout or 0.0


def _state_of(obj: Watched) -> str:
    return str(obj.state if isinstance(obj, Bid) else obj.phase)
