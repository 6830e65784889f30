"""Fake chain backends for the payment tests: a tiny in-memory chain and two real local
aiohttp servers speaking Bitcoin Core's JSON-RPC and Esplora's HTTP API over it. These are
fakes: they answer only the calls the watcher makes, the way the documented APIs do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from embit.descriptor import Descriptor
from embit.networks import NETWORKS


@dataclass
class FakeTx:
    txid: str
    outputs: list[tuple[str, int]]
    conflicted: bool = False


@dataclass
class FakeChain:
    network: str = "regtest"
    blocks: list[list[str]] = field(default_factory=lambda: [[]])
    mempool: list[str] = field(default_factory=list)
    txs: dict[str, FakeTx] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "timeout" | "garbage" | "503"
    requests: int = 0

    @property
    def tip(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> str:
        return hashlib.sha256(f"{height}:{self.blocks[height]}".encode()).hexdigest()

    def pay(self, address: str, sats: int, txid: str | None = None) -> str:
        """A transaction paying ``address`` at vout 1 (vout 0 is someone's change)."""
        txid = txid or secrets.token_hex(32)
        self.txs[txid] = FakeTx(txid, [("bcrt1qsomeoneelseschange", 4321), (address, sats)])
        self.mempool.append(txid)
        return txid

    def broadcast(self, txid: str, outputs: list[tuple[str, int]]) -> None:
        self.txs[txid] = FakeTx(txid, outputs)
        self.mempool.append(txid)

    def mine(self, n: int = 1) -> None:
        for _ in range(n):
            self.blocks.append(self.mempool)
            self.mempool = []

    def reorg(self, depth: int, drop: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Replace the last ``depth`` blocks with ``depth + 1`` empty ones; their transactions
        return to the mempool except ``drop`` (double-spent: gone from Esplora, conflicted
        with negative confirmations in Core's wallet)."""
        for txids in self.blocks[-depth:]:
            for txid in txids:
                if txid in drop:
                    self.txs[txid].conflicted = True
                else:
                    self.mempool.append(txid)
        del self.blocks[-depth:]
        self.blocks.extend([] for _ in range(depth + 1))

    def height_of(self, txid: str) -> int | None:
        for height, txids in enumerate(self.blocks):
            if txid in txids:
                return height
        return None

    def confirmations(self, txid: str) -> int:
        height = self.height_of(txid)
        if self.txs[txid].conflicted:
            return -1
        return 0 if height is None else self.tip - height + 1

    def visible(self) -> list[FakeTx]:
        """Transactions an Esplora node knows: not conflicted; oldest first."""
        return [t for t in self.txs.values() if not t.conflicted]

    async def maybe_fail(self) -> web.Response | None:
        self.requests += 1
        if not self.failures:
            return None
        mode = self.failures.pop(0)
        if mode == "timeout":
            await asyncio.sleep(5)
        if mode == "garbage":
            return web.Response(text="<html>502 upstream says hello</html>")
        return web.Response(status=503, text="busy")


def _rpc_result(value: Any, rid: Any) -> web.Response:
    return web.json_response({"result": value, "error": None, "id": rid})


def _rpc_error(code: int, message: str, rid: Any) -> web.Response:
    body = {"result": None, "error": {"code": code, "message": message}, "id": rid}
    return web.json_response(body, status=500)


class FakeCoreWallet:
    """The watch-only wallet RPCs of Bitcoin Core that the payments code calls."""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.watched: set[str] = set()
        self.net = NETWORKS[{"mainnet": "main", "testnet": "test"}.get(chain.network,
                                                                     chain.network)]
        self.methods: dict[str, Callable[[list[Any], Any], web.Response]] = {
            "getblockcount": lambda params, rid: _rpc_result(chain.tip, rid),
            "importdescriptors": self.import_descriptors,
            "listtransactions": self.list_transactions,
            "gettransaction": self.get_transaction,
        }

    def call(self, method: str, params: list[Any], rid: Any) -> web.Response:
        handler = self.methods.get(method)
        if handler is None:
            return _rpc_error(-32601, "Method not found", rid)
        return handler(params, rid)

    def receive_entries(self) -> list[dict[str, Any]]:
        chain, entries = self.chain, []
        for tx in chain.txs.values():
            for vout, (address, sats) in enumerate(tx.outputs):
                if address not in self.watched:
                    continue
                height = chain.height_of(tx.txid)
                entry = {"involvesWatchonly": True, "address": address, "category": "receive",
                         "amount": sats / 1e8, "label": "", "vout": vout,
                         "confirmations": chain.confirmations(tx.txid), "txid": tx.txid}
                if height is not None:
                    entry.update(blockhash=chain.block_hash(height), blockheight=height)
                entries.append(entry)
        return entries

    def import_descriptors(self, params: list[Any], rid: Any) -> web.Response:
        for req in params[0]:
            desc = Descriptor.from_string(req["desc"].split("#")[0])
            for i in range(req["range"][0], min(req["range"][1], 60) + 1):
                self.watched.add(desc.derive(i).script_pubkey().address(self.net))
        return _rpc_result([{"success": True} for _ in params[0]], rid)

    def list_transactions(self, params: list[Any], rid: Any) -> web.Response:
        count, skip = params[1], params[2]
        entries = self.receive_entries()
        return _rpc_result(entries[max(0, len(entries) - skip - count): len(entries) - skip],
                           rid)

    def get_transaction(self, params: list[Any], rid: Any) -> web.Response:
        txid = params[0]
        if txid not in self.chain.txs:
            return _rpc_error(-5, "Invalid or non-wallet transaction id", rid)
        return _rpc_result({"txid": txid, "confirmations": self.chain.confirmations(txid)}, rid)


def core_app(chain: FakeChain, user: str = "rpc", password: str = "secret") -> web.Application:
    wallet = FakeCoreWallet(chain)
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def rpc(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        failed = await chain.maybe_fail()
        if failed is not None:
            return failed
        call = await request.json()
        return wallet.call(call["method"], call.get("params", []), call.get("id"))

    app = web.Application()
    app.router.add_post("/", rpc)
    app.router.add_post("/wallet/{name}", rpc)
    return app


def esplora_app(chain: FakeChain) -> web.Application:
    def tx_json(tx: FakeTx) -> dict[str, Any]:
        height = chain.height_of(tx.txid)
        status: dict[str, Any] = {"confirmed": height is not None}
        if height is not None:
            status.update(block_height=height, block_hash=chain.block_hash(height))
        vout = [{"scriptpubkey_address": a, "value": v} for a, v in tx.outputs]
        return {"txid": tx.txid, "vout": vout, "status": status}

    def history(address: str) -> tuple[list[FakeTx], list[FakeTx]]:
        mine = [t for t in chain.visible() if any(a == address for a, _ in t.outputs)]
        unconfirmed = [t for t in mine if chain.height_of(t.txid) is None]
        confirmed = sorted((t for t in mine if chain.height_of(t.txid) is not None),
                           key=lambda t: -(chain.height_of(t.txid) or 0))
        return unconfirmed[::-1], confirmed

    async def guarded(request: web.Request) -> web.Response | None:
        return await chain.maybe_fail()

    async def tip(request: web.Request) -> web.Response:
        return await guarded(request) or web.Response(text=str(chain.tip))

    async def address_txs(request: web.Request) -> web.Response:
        failed = await guarded(request)
        if failed is not None:
            return failed
        mempool, confirmed = history(request.match_info["address"])
        return web.json_response([tx_json(t) for t in mempool[:50] + confirmed[:25]])

    async def address_chain(request: web.Request) -> web.Response:
        _, confirmed = history(request.match_info["address"])
        ids = [t.txid for t in confirmed]
        start = ids.index(request.match_info["last"]) + 1
        return web.json_response([tx_json(t) for t in confirmed[start:start + 25]])

    async def tx_status(request: web.Request) -> web.Response:
        failed = await guarded(request)
        if failed is not None:
            return failed
        tx = chain.txs.get(request.match_info["txid"])
        if tx is None or tx.conflicted:
            return web.Response(status=404, text="Transaction not found")
        return web.json_response(tx_json(tx)["status"])

    app = web.Application()
    app.router.add_get("/blocks/tip/height", tip)
    app.router.add_get("/address/{address}/txs", address_txs)
    app.router.add_get("/address/{address}/txs/chain/{last}", address_chain)
    app.router.add_get("/tx/{txid}/status", tx_status)
    return app


def dumps(obj: Any) -> str:
    return json.dumps(obj)
