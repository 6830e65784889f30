"""One events-stream subscription per participant, fanned out to whoever waits.

Trades wait for "transaction 7 reached TRANSMITTING" or "bid 12 matched". A waiter first
reads the current state over HTTP, then waits for stream events, so nothing is missed
across a reconnect; there are no polling loops with growing sleeps (the original's flaw).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from ..client import ExchangeClient
from ..errors import BitwrkError

log = logging.getLogger("bitwrk.daemon")
RECONNECT_DELAY = 1.0

Predicate = Callable[[dict[str, Any]], bool]


class Watcher:
    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        self._waiters: dict[tuple[str, int], set[asyncio.Queue[dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

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
        while True:
            try:
                async for event in self.client.events(self.client.address):
                    if event.kind == "hello":
                        self.connected.set()
                        self._wake_all()
                    elif event.kind in ("bid", "transaction"):
                        self._dispatch(event.kind, event.data)
            except (TimeoutError, aiohttp.ClientError, BitwrkError, ValueError) as exc:
                log.info("events stream lost (%s); reconnecting", exc)
            self.connected.clear()
            await asyncio.sleep(RECONNECT_DELAY)

    def _dispatch(self, kind: str, data: dict[str, Any]) -> None:
        for q in self._waiters.get((kind, int(data.get("id", 0))), ()):
            q.put_nowait(data)

    def _wake_all(self) -> None:
        """After a (re)connect, make every waiter re-read its object: events may be lost."""
        for q_set in self._waiters.values():
            for q in q_set:
                q.put_nowait({})

    async def wait(
        self, kind: str, obj_id: int, done: Predicate, timeout: float
    ) -> dict[str, Any]:
        """The object (``bid`` or ``transaction``) once ``done(obj)`` holds."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        key = (kind, obj_id)
        self._waiters.setdefault(key, set()).add(q)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    obj = await self._read(kind, obj_id)
                    if done(obj):
                        return obj
                    data = await q.get()
                    while data and not done(data):  # drain events until one matters
                        data = await q.get()
                    if data:
                        return data
        finally:
            self._waiters[key].discard(q)
            if not self._waiters[key]:
                del self._waiters[key]

    async def _read(self, kind: str, obj_id: int) -> dict[str, Any]:
        if kind == "bid":
            return await self.client.bid(obj_id)
        return await self.client.transaction(obj_id)
