"""Esplora HTTP API backend (Blockstream's electrs; mempool.space serves the same API).

``GET /blocks/tip/height`` (plain integer), ``GET /address/:address/txs`` (newest first: up
to 50 mempool and 25 confirmed transactions, more confirmed ones with
``/address/:address/txs/chain/:last_seen_txid``) and ``GET /tx/:txid/status``.
https://github.com/Blockstream/esplora/blob/master/API.md
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .chain import SeenOutput, WatchSet, txid_of
from .errors import BackendProtocolError
from .http import HttpTransport

CHAIN_PAGE = 25


class EsploraBackend:
    name = "esplora"

    def __init__(self, url: str, *, timeout: float = 10.0, attempts: int = 3,
                 backoff: float = 0.5, concurrency: int = 4) -> None:
        self.url = url.rstrip("/")
        self.http = HttpTransport("esplora", timeout=timeout, attempts=attempts,
                                  backoff=backoff, concurrency=concurrency)

    async def close(self) -> None:
        await self.http.close()

    async def _get(self, path: str) -> tuple[int, Any]:
        status, body = await self.http.send("GET", self.url + path)
        if status == 404:
            return status, None
        if status != 200:
            raise BackendProtocolError(f"esplora: GET {path} answered HTTP {status}",
                                       backend=self.name, path=path)
        try:
            return status, json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BackendProtocolError(f"esplora: GET {path} answered no JSON",
                                       backend=self.name, path=path) from exc

    async def tip(self) -> int:
        _, height = await self._get("/blocks/tip/height")
        if type(height) is not int or height < 0:
            raise BackendProtocolError("esplora: tip height is no integer", backend=self.name)
        return height

    async def scan(self, watch: WatchSet) -> list[SeenOutput]:
        tip = await self.tip()
        found = await asyncio.gather(*(self._address(a, tip) for a in watch.addresses))
        return [out for outs in found for out in outs]

    async def _address(self, address: str, tip: int) -> list[SeenOutput]:
        path = f"/address/{address}/txs"
        outputs: list[SeenOutput] = []
        while True:
            _, txs = await self._get(path)
            if not isinstance(txs, list):
                raise BackendProtocolError(f"esplora: {path} gave no list", backend=self.name)
            for tx in txs:
                outputs.extend(self._outputs(tx, address, tip))
            confirmed = [tx for tx in txs if tx["status"].get("confirmed")]
            if len(confirmed) < CHAIN_PAGE:
                return outputs
            path = f"/address/{address}/txs/chain/{confirmed[-1]['txid']}"

    def _outputs(self, tx: Any, address: str, tip: int) -> list[SeenOutput]:
        try:
            txid = txid_of(tx["txid"], self.name)
            status = tx["status"]
            confirmations = _confirmations(status, tip)
            found = []
            for n, out in enumerate(tx["vout"]):
                if out.get("scriptpubkey_address") != address:
                    continue
                value = out["value"]
                if type(value) is not int or value <= 0:
                    raise TypeError(f"value {value!r}")
                found.append(SeenOutput(txid, n, address, value, confirmations,
                                        status.get("block_hash")))
            return found
        except (KeyError, TypeError, AttributeError) as exc:
            raise BackendProtocolError(f"esplora: malformed transaction: {exc}",
                                       backend=self.name) from exc

    async def confirmations(self, txid: str) -> int | None:
        _, status = await self._get(f"/tx/{txid}/status")
        if status is None:
            return None
        try:
            return _confirmations(status, await self.tip())
        except (KeyError, TypeError, AttributeError) as exc:
            raise BackendProtocolError(f"esplora: malformed status: {exc}",
                                       backend=self.name) from exc


def _confirmations(status: Any, tip: int) -> int:
    if not status["confirmed"]:
        return 0
    height = status["block_height"]
    if type(height) is not int or not 0 <= height <= tip + 1:
        raise TypeError(f"block_height {height!r}")
    return max(0, tip - height + 1)
