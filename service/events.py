"""Events: what the exchange tells participants after a commit, and the fan-out to streams.

Fan-out must not slow bid handling however many subscribers listen (issue 11: 2,000 idle
public subscribers made a bid 50× slower when every event was queued to every subscriber
on the request's turn of the loop). So ``publish`` only encodes each event once and appends
it to its stream's pending bytes — constant work per event and stream. Background pumps
send the pending bytes with one ``write`` per subscriber per flush: private streams (a few
subscribers each, and daemons wait on them) after ``PRIVATE_FLUSH``, the public stream
(possibly thousands of subscribers) every ``limits.stream_flush`` seconds, in slices that
yield to the loop between them, so a bid never waits behind a whole round. A subscriber
whose socket will not take the bytes (write buffer over ``MAX_BUFFERED``) is dropped; its
client reconnects and re-reads state.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Limits
from .errors import TooManyStreams

MAX_BUFFERED = 256 * 1024  # bytes a subscriber may have unsent before it is dropped
SLICE = 16  # subscribers written per turn of the loop (under a millisecond on loopback)
PRIVATE_FLUSH = 0.002  # seconds: gathers one request's events, keeps match -> event fast
# Public flushes are spaced so that the writes they cost stay near this many per second
# whatever the number of subscribers (each write is a syscall, and on loopback the kernel
# charges the receiver's side to the sender too): 2,000 subscribers hear every second.
PUBLIC_WRITES_PER_S = 2000


@dataclass(frozen=True)
class Event:
    kind: str  # "bid" | "transaction" | "trade" | "book" | "account"
    data: dict[str, Any]
    to: tuple[str, ...] = ()  # participants concerned
    public: bool = False  # also on the market-wide stream


@dataclass(eq=False)
class Subscription:
    address: str | None  # None: the public market stream
    write: Callable[[bytes], None]  # frames and sends bytes without waiting
    buffered: Callable[[], int]  # bytes written but not yet sent
    closing: Callable[[], bool]  # the connection is gone
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False  # set once the response's headers and hello are out


def frame(event_id: int, event: Event) -> bytes:
    data = json.dumps(event.data, default=str)
    return f"id: {event_id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keepalive\n\n"


class EventBus:
    """Owns the event-stream subscriptions: publishes committed events to the public
    stream and to the addresses they concern, under ``limits`` on subscribers."""

    def __init__(self, limits: Limits | None = None, keepalive: float = 15.0) -> None:
        self.limits = limits or Limits()
        self.keepalive = keepalive
        self._by_address: dict[str | None, set[Subscription]] = {}
        self._count = 0
        self._pending: dict[str | None, list[bytes]] = {}  # None: the public stream
        self._wake = {True: asyncio.Event(), False: asyncio.Event()}  # by "is public"
        self._ids = itertools.count(1)
        # New on every start: a client seeing another epoch in ``hello`` knows the exchange
        # restarted (event ids start again) and that it must re-read what it waits for.
        self.epoch = secrets.token_hex(8)
        # Set on a shared store (service.pgstore.EventRelay.send): events to other processes.
        self.relay: Callable[[list[Event]], None] | None = None

    def subscribe(self, sub: Subscription) -> None:
        """Register ``sub``; TooManyStreams at the total or the per-address cap."""
        if self._count >= self.limits.max_streams:
            raise TooManyStreams("too many event streams; try again later",
                                 limit=self.limits.max_streams)
        subs = self._by_address.setdefault(sub.address, set())
        if sub.address is not None and len(subs) >= self.limits.max_streams_per_address:
            raise TooManyStreams("too many event streams for this address",
                                 limit=self.limits.max_streams_per_address)
        subs.add(sub)
        self._count += 1

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_address.get(sub.address)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._by_address[sub.address]
        sub.done.set()

    @property
    def subscribers(self) -> int:
        return self._count

    def publish(self, events: list[Event]) -> None:
        """Queue ``events`` for their streams: O(1) per event and target, no I/O here; on
        a shared store also hand them to the relay for the other exchange processes."""
        if self.relay is not None:
            self.relay(events)
        self.publish_remote(events)

    def publish_remote(self, events: list[Event]) -> None:
        """Queue events to this process's streams only (those another process relayed)."""
        for event in events:
            targets: set[str | None] = set(event.to)
            if event.public:
                targets.add(None)
            targets.intersection_update(self._by_address)
            event_id = next(self._ids)
            if event.kind == "account" and None in self._by_address and not event.public:
                # The public stream hears that an account changed, not its balances (the
                # account page refreshes from the public GETs; private streams need a token).
                notice = Event("account", {"address": event.data.get("address")})
                self._queue(None, frame(event_id, notice))
            if targets:
                data = frame(event_id, event)
                for target in targets:
                    self._queue(target, data)

    def _queue(self, target: str | None, data: bytes) -> None:
        self._pending.setdefault(target, []).append(data)
        self._wake[target is None].set()

    async def run(self) -> None:
        """Send pending events and keepalives to the subscribers until cancelled."""
        await asyncio.gather(self._pump(public=False), self._pump(public=True),
                             self._keepalives())

    async def _pump(self, public: bool) -> None:
        wake = self._wake[public]
        while True:
            await wake.wait()
            await asyncio.sleep(self._flush_delay(public))  # let a batch gather
            wake.clear()
            batches: dict[str | None, list[bytes]]
            if public:
                frames = self._pending.pop(None, [])
                batches = {None: frames} if frames else {}
            else:
                batches = {t: f for t, f in self._pending.items() if t is not None}
                for target in batches:
                    del self._pending[target]
            for target, items in batches.items():
                await self._send(list(self._by_address.get(target, ())), b"".join(items))

    def _flush_delay(self, public: bool) -> float:
        if not public:
            return PRIVATE_FLUSH
        listeners = len(self._by_address.get(None, ()))
        return max(self.limits.stream_flush, listeners / PUBLIC_WRITES_PER_S)

    async def _keepalives(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            everyone = [s for subs in self._by_address.values() for s in subs]
            await self._send(everyone, KEEPALIVE)

    async def _send(self, subs: list[Subscription], data: bytes) -> None:
        for start in range(0, len(subs), SLICE):
            for sub in subs[start:start + SLICE]:
                if sub.done.is_set() or not sub.ready:
                    continue
                if sub.closing() or sub.buffered() > MAX_BUFFERED:
                    self.unsubscribe(sub)  # gone, or too slow to keep up: it reconnects
                    continue
                try:
                    sub.write(data)
                except (ConnectionError, RuntimeError):
                    self.unsubscribe(sub)
            if start + SLICE < len(subs):
                await asyncio.sleep(0)

    def close(self) -> None:
        for subs in list(self._by_address.values()):
            for sub in list(subs):
                self.unsubscribe(sub)
