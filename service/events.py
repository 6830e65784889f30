"""Events: what the exchange tells participants after a commit, and the in-memory fan-out.

Subscribers get a bounded queue; one that falls too far behind is dropped (its stream ends
and the daemon reconnects and re-reads state) instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Event:
    kind: str  # "bid" | "transaction" | "trade" | "book" | "account"
    data: dict[str, Any]
    to: tuple[str, ...] = ()  # participants concerned
    public: bool = False  # also on the market-wide stream


@dataclass(eq=False)
class Subscription:
    address: str | None  # None: the public market stream
    queue: asyncio.Queue[tuple[int, Event] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )


class EventBus:
    def __init__(self) -> None:
        self._by_address: dict[str | None, set[Subscription]] = {}
        self._ids = itertools.count(1)
        # New on every start: a client seeing another epoch in ``hello`` knows the exchange
        # restarted (event ids start again) and that it must re-read what it waits for.
        self.epoch = secrets.token_hex(8)

    def subscribe(self, address: str | None) -> Subscription:
        sub = Subscription(address)
        self._by_address.setdefault(address, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_address.get(sub.address)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_address[sub.address]

    def publish(self, events: list[Event]) -> None:
        for event in events:
            event_id = next(self._ids)
            targets: set[str | None] = set(event.to)
            if event.public:
                targets.add(None)
            for target in targets:
                for sub in list(self._by_address.get(target, ())):
                    self._deliver(sub, (event_id, event))

    def _deliver(self, sub: Subscription, item: tuple[int, Event]) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.unsubscribe(sub)
            sub.queue.get_nowait()  # make room for the end-of-stream marker
            sub.queue.put_nowait(None)

    def close(self) -> None:
        for subs in list(self._by_address.values()):
            for sub in list(subs):
                self.unsubscribe(sub)
                if sub.queue.full():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
