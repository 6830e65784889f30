"""What the relay asks its exchange: who may hold a tunnel, who may open a stream.

The relay is its own process (``python -m service relay``) and asks the exchange over the
same public HTTP API as everyone else, so it needs no database and can run on another
machine. A tunnel is for a *registered* seller — an address the exchange has accepted a
signed request from (``last_nonce`` > 0: a probe, a bid). A stream is for the buyer of a
live transaction with that seller; the parties of a transaction never change, so they are
kept for a while, but a transaction seen retired is refused. The relay follows the
exchange's public event stream, where every transaction message appears (the seller's
``endpoint`` before any buyer request), so a buyer's request seldom waits for a look-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from bitwrk.client import ExchangeClient
from bitwrk.errors import BitwrkError, ExchangeUnavailable, Forbidden, NotFound
from bitwrk.retry import backoff, describe

log = logging.getLogger("bitwrk.relay")

PARTIES_TTL = 30.0  # seconds a looked-up transaction is trusted without asking again
PARTIES_KEPT = 4096


class ExchangeGate:
    def __init__(self, exchange_url: str, session: aiohttp.ClientSession) -> None:
        self.url = exchange_url.rstrip("/")
        self.session = session
        self._exchange_id: str | None = None
        self._parties: OrderedDict[int, tuple[float, str, str]] = OrderedDict()

    async def _get(self, path: str) -> dict[str, Any]:
        try:
            async with self.session.get(self.url + path,
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ExchangeUnavailable(f"cannot ask the exchange: {exc}") from None
        if resp.status == 404:
            raise NotFound(str(body.get("message", "not found")))
        if resp.status != 200 or not isinstance(body, dict):
            raise ExchangeUnavailable(f"the exchange answered {resp.status}")
        return body

    async def exchange_id(self) -> str:
        if self._exchange_id is None:
            self._exchange_id = str((await self._get("/api/v1/info"))["exchange"])
        return self._exchange_id

    async def check_registered(self, address: str) -> None:
        account = await self._get(f"/api/v1/accounts/{address}")
        if int(account.get("last_nonce", 0)) <= 0:
            raise Forbidden("the exchange knows no signed request from this address: a tunnel"
                            " is for registered sellers (sign something first: a probe, a bid)")

    async def follow(self) -> None:
        """Learn transactions from the public event stream until cancelled."""
        client = ExchangeClient(self.url, session=self.session)
        failures = 0
        while True:
            try:
                async for event in client.events():
                    failures = 0
                    if event.kind == "transaction":
                        self.learn(event.data)
            except (BitwrkError, aiohttp.ClientError, OSError, TimeoutError,
                    ValueError) as exc:
                log.info("event stream: %s; following again", describe(exc))
            await asyncio.sleep(backoff(failures, base=0.5, cap=10.0))
            failures += 1

    def learn(self, tx: dict[str, Any]) -> None:
        try:
            txid, buyer, seller = int(tx["id"]), str(tx["buyer"]), str(tx["seller"])
        except (KeyError, TypeError, ValueError):
            return
        if tx.get("retired") is not None:
            self._parties.pop(txid, None)  # the next request asks, and is refused
            return
        self._remember(txid, (time.monotonic(), buyer, seller))

    def _remember(self, txid: int, known: tuple[float, str, str]) -> None:
        self._parties[txid] = known
        self._parties.move_to_end(txid)
        while len(self._parties) > PARTIES_KEPT:
            self._parties.popitem(last=False)

    async def check_trade(self, txid: int, buyer: str, seller: str) -> None:
        """Refuse unless ``buyer`` bought from ``seller`` in live transaction ``txid``."""
        now = time.monotonic()
        known = self._parties.get(txid)
        if known is None or now - known[0] > PARTIES_TTL:
            try:
                tx = await self._get(f"/api/v1/transactions/{txid}")
            except NotFound:
                raise Forbidden(f"no transaction {txid}") from None
            if tx.get("retired") is not None:
                raise Forbidden(f"transaction {txid} is over ({tx.get('phase')})")
            known = (now, str(tx["buyer"]), str(tx["seller"]))
            self._remember(txid, known)
        if (known[1], known[2]) != (buyer, seller):
            raise Forbidden(f"only the buyer of transaction {txid} may reach its seller")
